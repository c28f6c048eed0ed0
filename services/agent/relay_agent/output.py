"""Turning a command's stdout and stderr into numbered chunks sent to the relay.

Memory stays bounded whatever the command prints:
- at most `max_unacked` chunks wait for the relay; past that the readers stop reading,
  and the command blocks on its full pipe (backpressure) instead of the agent growing;
- past `max_bytes` of output per run only the last `tail_bytes` are kept, and sent
  after a line that says how much was dropped (the relay keeps head and tail too).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
FLUSH_SECONDS = 0.5
TAIL_BYTES = 64 * 1024
MAX_UNACKED = 16
# The cut marker goes out as stderr: it is about the output, not part of it.
MARKER_STREAM = "stderr"


@dataclass(frozen=True)
class Chunk:
    seq: int
    stream: str
    data: str

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "stream": self.stream, "data": self.data}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Chunk:
        return cls(int(data["seq"]), str(data["stream"]), str(data["data"]))  # type: ignore[arg-type]


Sender = Callable[[Chunk], Awaitable[None]]


class OutputStreamer:
    def __init__(
        self,
        send: Sender,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        tail_bytes: int = TAIL_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
        flush_seconds: float = FLUSH_SECONDS,
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._tail_limit = min(tail_bytes, max_bytes) if max_bytes else 0
        self._chunk_bytes = chunk_bytes
        self._flush_seconds = flush_seconds
        self._max_unacked = max_unacked

        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }
        self._pending: list[list[str]] = []  # [stream, text] in arrival order
        self._pending_bytes = 0
        self._head_bytes = 0
        self._tail: deque[list[str]] = deque()
        self._tail_bytes = 0
        self._dropped_bytes = 0

        self._next_seq = 0
        self._unacked: deque[Chunk] = deque()
        self._changed = asyncio.Condition()
        self._flush_lock = asyncio.Lock()
        self._released = False
        self._tasks: list[asyncio.Task[None]] = []
        self._notifiers: set[asyncio.Task[None]] = set()

    @property
    def dropped_bytes(self) -> int:
        return self._dropped_bytes

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._tick_loop()),
        ]

    async def write(self, stream: str, data: bytes) -> None:
        """New bytes from one stream; waits while too much is unacknowledged."""
        await self._add(stream, self._decoders[stream].decode(data))

    def release(self) -> None:
        """The command has ended: stop holding the readers back, so they can finish."""
        self._released = True
        self._changed_nowait()

    async def close(self) -> None:
        """All output is in: queue what is pending, then the cut marker and the tail."""
        self.release()
        for stream, decoder in self._decoders.items():
            await self._add(stream, decoder.decode(b"", final=True))
        async with self._flush_lock:
            await self._flush_locked()
            if self._dropped_bytes:
                note = (
                    f"\n[relay-agent: {self._dropped_bytes} bytes of output dropped]\n"
                )
                await self._enqueue([Chunk(self._take_seq(), MARKER_STREAM, note)])
            self._pending = list(self._tail)
            self._tail.clear()
            await self._flush_locked()

    async def detach(self) -> list[Chunk]:
        """Stop sending; returns the chunks the relay has not acknowledged, in order."""
        for task in self._tasks:
            task.cancel()
        # A sender that died of a relay error has already told the run through send().
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return list(self._unacked)

    # --- collecting ---------------------------------------------------------------

    async def _add(self, stream: str, text: str) -> None:
        if not text:
            return
        size = _utf8_len(text)
        room = self._max_bytes - self._head_bytes if self._max_bytes else size

        if size > room:
            head = _cut_utf8(text, max(room, 0))
            self._keep_tail(stream, text[len(head) :])
            text, size = head, _utf8_len(head)
            if not text:
                return

        self._head_bytes += size
        if self._pending and self._pending[-1][0] == stream:
            self._pending[-1][1] += text
        else:
            self._pending.append([stream, text])
        self._pending_bytes += size
        if self._pending_bytes >= self._chunk_bytes:
            await self._flush()

    def _keep_tail(self, stream: str, text: str) -> None:
        # Past the cap: keep only the newest tail_bytes, count the rest as dropped.
        size = _utf8_len(text)
        if self._tail and self._tail[-1][0] == stream:
            self._tail[-1][1] += text
        else:
            self._tail.append([stream, text])
        self._tail_bytes += size

        while self._tail_bytes > self._tail_limit:
            excess = self._tail_bytes - self._tail_limit
            first = self._tail[0]
            first_size = _utf8_len(first[1])
            if first_size <= excess:
                self._tail.popleft()
                self._tail_bytes -= first_size
                self._dropped_bytes += first_size
                continue
            kept = first[1].encode("utf-8")[excess:].decode("utf-8", errors="ignore")
            cut = first_size - _utf8_len(kept)
            first[1] = kept
            self._tail_bytes -= cut
            self._dropped_bytes += cut

    async def _tick_loop(self) -> None:
        # Output that trickles in still reaches the relay about every flush_seconds.
        while True:
            await asyncio.sleep(self._flush_seconds)
            if self._pending:
                await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        chunks = []
        for stream, text in self._pending:
            for piece in _split_utf8(text, self._chunk_bytes):
                chunks.append(Chunk(self._take_seq(), stream, piece))
        self._pending = []
        self._pending_bytes = 0
        await self._enqueue(chunks)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    # --- sending ------------------------------------------------------------------

    async def _enqueue(self, chunks: list[Chunk]) -> None:
        async with self._changed:
            for chunk in chunks:
                await self._changed.wait_for(self._has_room)
                self._unacked.append(chunk)
                self._changed.notify_all()

    def _has_room(self) -> bool:
        return (
            self._released
            or len(self._unacked) < self._max_unacked
            or self._sender_done()
        )

    def _sender_done(self) -> bool:
        return bool(self._tasks) and self._tasks[0].done()

    async def _send_loop(self) -> None:
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: bool(self._unacked))
                    chunk = self._unacked[0]

                await self._send(chunk)

                async with self._changed:
                    self._unacked.popleft()
                    self._changed.notify_all()
        finally:
            # Wake writers that wait for room: with no sender they must not block.
            self._changed_nowait()

    def _changed_nowait(self) -> None:
        # Called from plain functions; the task is kept so it is not collected early.
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifiers.add(task)
        task.add_done_callback(self._notifiers.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of text that is at most `limit` bytes of UTF-8."""
    if _utf8_len(text) <= limit:
        return text
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _split_utf8(text: str, limit: int) -> list[str]:
    pieces = []
    while text:
        piece = _cut_utf8(text, limit)
        if not piece:  # limit below one character: send it whole rather than loop
            piece = text[0]
        pieces.append(piece)
        text = text[len(piece) :]
    return pieces
