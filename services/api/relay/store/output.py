"""A run's output: appended chunk by chunk, capped to a head and a tail.

The first half of the cap keeps the start of the output for good; the second
half rolls, dropping its oldest bytes first, so the end of a long output is
always there too. Only the chunks in flight are in memory, however much a
command prints.
"""

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.engine import Database
from relay.db.tables import run_output, runs
from relay.store.leases import StaleLease, UnknownRun, same_token
from relay.store.runs import FINAL, Run

log = logging.getLogger(__name__)

# Chunks written in one transaction at most; a bigger backlog takes several.
MAX_BATCH = 200

CUT_MARK = "\n[... {} bytes of output cut ...]\n"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _split_at_byte(text: str, limit: int) -> tuple[str, str]:
    """Split text so the first part is at most `limit` bytes, whole characters."""
    encoded = text.encode("utf-8")
    first = encoded[:limit].decode("utf-8", errors="ignore")
    return first, text[len(first) :]


@dataclass(frozen=True)
class Chunk:
    run_id: int
    agent_id: int
    lease_token: str
    seq: int
    stream: str
    data: str


@dataclass
class _Counters:
    agent_id: int | None
    lease_token: str | None
    status: str
    output_bytes: int
    kept: int
    last_seq: int | None
    changed: bool = False


async def append_chunks(
    connection: AsyncConnection, chunks: list[Chunk], limit_bytes: int
) -> list[bool | Exception]:
    """Store chunks, in order, in few statements whatever their number.

    For each chunk: True when stored, False when its sequence number was
    stored already, or the error (UnknownRun, StaleLease) that refuses it.
    """
    counters = await _load_counters(connection, {chunk.run_id for chunk in chunks})
    rows, results = [], []
    for chunk in chunks:
        state = counters.get(chunk.run_id)
        refusal = _refusal(state, chunk)
        if refusal is not None:
            results.append(refusal)
            continue
        # After the run ended (a retried chunk whose answer was lost, say), or
        # at or below the last number stored: a repeat, not new output.
        repeat = state.last_seq is not None and chunk.seq <= state.last_seq
        if repeat or state.status in FINAL:
            results.append(False)
            continue

        rows += _place(state, chunk, limit_bytes)
        results.append(True)

    if rows:
        await connection.execute(insert(run_output), rows)
    await _roll_tails(connection, counters, limit_bytes)
    await _save_counters(connection, counters)
    return results


async def _load_counters(connection, run_ids: set[int]) -> dict[int, _Counters]:
    statement = select(
        runs.c.id,
        runs.c.agent_id,
        runs.c.lease_token,
        runs.c.status,
        runs.c.output_bytes,
        runs.c.output_kept_bytes,
        runs.c.output_last_seq,
    ).where(runs.c.id.in_(run_ids))
    rows = await connection.execute(statement)
    return {row[0]: _Counters(*row[1:]) for row in rows}


def _refusal(state: _Counters | None, chunk: Chunk) -> Exception | None:
    if state is None or state.agent_id != chunk.agent_id:
        return UnknownRun(chunk.run_id)
    if not same_token(state.lease_token, chunk.lease_token):
        return StaleLease(chunk.run_id)
    return None


def _place(state: _Counters, chunk: Chunk, limit_bytes: int) -> list[dict]:
    """Rows for one chunk: what fits in the head, the rest to the tail."""
    head_cap = limit_bytes // 2
    head_used = min(state.output_bytes, head_cap)
    head, tail = _split_at_byte(chunk.data, head_cap - head_used)

    rows = []
    for part, text in (("head", head), ("tail", tail)):
        if text:
            rows.append(_row(chunk, part, text))
    state.output_bytes += _size(chunk.data)
    state.kept += _size(head) + _size(tail)
    state.last_seq = chunk.seq
    state.changed = True
    return rows


def _row(chunk: Chunk, part: str, text: str) -> dict:
    return {
        "run_id": chunk.run_id,
        "seq": chunk.seq,
        "part": part,
        "stream": chunk.stream,
        "size": _size(text),
        "data": text,
    }


async def _roll_tails(connection, counters: dict[int, _Counters], limit_bytes: int):
    head_cap = limit_bytes // 2
    tail_cap = limit_bytes - head_cap
    for run_id, state in counters.items():
        head_used = min(state.output_bytes, head_cap)
        tail_kept = state.kept - head_used
        if state.changed and tail_kept > tail_cap:
            state.kept = head_used + await _roll_tail(
                connection, run_id, tail_kept, tail_cap
            )


async def _save_counters(connection, counters: dict[int, _Counters]) -> None:
    changed = [
        {
            "run_id": run_id,
            "total": state.output_bytes,
            "kept": state.kept,
            "last_seq": state.last_seq,
        }
        for run_id, state in counters.items()
        if state.changed
    ]
    if not changed:
        return

    statement = (
        update(runs)
        .where(runs.c.id == bindparam("run_id"))
        .values(
            output_bytes=bindparam("total"),
            output_kept_bytes=bindparam("kept"),
            output_last_seq=bindparam("last_seq"),
        )
    )
    await connection.execute(statement, changed)


class OutputWriter:
    """Chunks from every agent, written together a transaction at a time.

    A report waits for the transaction that stores its chunk, so an agent's
    acknowledgement still means stored. While one transaction runs, the chunks
    arriving meanwhile gather for the next; under load each costs a fraction of
    a transaction instead of a whole one.
    """

    def __init__(self, database: Database, limit_bytes: int) -> None:
        self.database = database
        self.limit_bytes = limit_bytes
        self._waiting: list[tuple[Chunk, asyncio.Future]] = []
        self._arrived = asyncio.Event()

    async def append(self, chunk: Chunk) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((chunk, future))
        self._arrived.set()
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def write_forever(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            if self._waiting:
                self._arrived.set()
            await self._write(batch)

    async def _write(self, batch) -> None:
        chunks = [chunk for chunk, _ in batch]
        try:
            async with self.database.write() as connection:
                results = await append_chunks(connection, chunks, self.limit_bytes)
        except Exception as exc:
            log.warning("output of %s chunks not written: %s", len(batch), exc)
            results = [exc] * len(batch)

        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


async def _roll_tail(connection, run_id: int, kept: int, cap: int) -> int:
    """Drop the oldest tail bytes beyond the cap; return the bytes kept."""
    excess = kept - cap
    if excess <= 0:
        return kept

    oldest = await connection.execute(
        select(run_output.c.seq, run_output.c.size, run_output.c.data)
        .where(run_output.c.run_id == run_id, run_output.c.part == "tail")
        .order_by(run_output.c.seq)
    )
    for seq, size, data in oldest:
        if excess <= 0:
            break
        row = (
            (run_output.c.run_id == run_id)
            & (run_output.c.seq == seq)
            & (run_output.c.part == "tail")
        )
        if size <= excess:
            await connection.execute(delete(run_output).where(row))
            kept, excess = kept - size, excess - size
            continue

        _, rest = _split_at_byte(data, excess)
        await connection.execute(
            update(run_output).where(row).values(data=rest, size=_size(rest))
        )
        kept, excess = kept - size + _size(rest), 0
    return kept


async def read_output(
    connection: AsyncConnection, run: Run, stream: str | None = None
) -> str:
    """The kept output in order, with a mark where bytes were cut."""
    statement = (
        select(run_output.c.part, run_output.c.data)
        .where(run_output.c.run_id == run.id)
        .order_by(run_output.c.seq, run_output.c.part)
    )
    if stream is not None:
        statement = statement.where(run_output.c.stream == stream)

    pieces, marked = [], False
    cut = run.output_bytes - run.output_kept_bytes
    for part, data in await connection.execute(statement):
        if part == "tail" and cut and not marked:
            pieces.append(CUT_MARK.format(cut))
            marked = True
        pieces.append(data)
    if cut and not marked:
        pieces.append(CUT_MARK.format(cut))
    return "".join(pieces)
