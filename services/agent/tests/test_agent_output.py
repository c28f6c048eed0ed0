"""Output chunking: order, UTF-8, the per-run cap, backpressure, bounded memory."""

from __future__ import annotations

import asyncio

from agent_fakes import FakeRelay

from relay_agent.output import Chunk, OutputStreamer


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Chunk] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, chunk: Chunk) -> None:
        await self.gate.wait()
        self.sent.append(chunk)

    def text(self, stream: str | None = None) -> str:
        assert [c.seq for c in self.sent] == list(range(len(self.sent)))
        return "".join(c.data for c in self.sent if stream in (None, c.stream))


async def finish(streamer: OutputStreamer) -> list[Chunk]:
    await streamer.close()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not streamer._unacked:
            break
    return await streamer.detach()


async def test_a_character_split_between_reads_arrives_whole():
    recorder = Recorder()
    streamer = OutputStreamer(recorder.send)
    streamer.start()
    data = "naïve → 日本\n".encode()

    for i in range(len(data)):
        await streamer.write("stdout", data[i : i + 1])
    await streamer.write("stderr", b"bad \xff byte\n")
    left = await finish(streamer)

    assert left == []
    assert recorder.text("stdout") == "naïve → 日本\n"
    assert recorder.text("stderr") == "bad \ufffd byte\n"


async def test_output_past_the_cap_keeps_head_and_tail_and_says_what_was_cut():
    recorder = Recorder()
    streamer = OutputStreamer(recorder.send, max_bytes=100, tail_bytes=20)
    streamer.start()

    for i in range(50):
        await streamer.write("stdout", f"line {i:03d}\n".encode())  # 9 bytes each
    await finish(streamer)

    everything = "".join(f"line {i:03d}\n" for i in range(50))
    head, tail = everything[:100], everything[-20:]
    dropped = len(everything) - 120
    assert recorder.text() == (
        head + f"\n[relay-agent: {dropped} bytes of output dropped]\n" + tail
    )
    assert streamer.dropped_bytes == dropped == 330
    assert recorder.sent[-2].stream == "stderr"


async def test_a_slow_relay_holds_the_writer_back():
    recorder = Recorder()
    recorder.gate.clear()  # the relay does not answer
    streamer = OutputStreamer(recorder.send, chunk_bytes=10, max_unacked=2)
    streamer.start()

    writer = asyncio.create_task(streamer.write("stdout", b"x" * 100))
    await asyncio.sleep(0.2)
    assert not writer.done()
    assert len(streamer._unacked) == 2

    recorder.gate.set()
    await asyncio.wait_for(writer, 2)
    await finish(streamer)
    assert recorder.text() == "x" * 100
    assert all(len(c.data) <= 10 for c in recorder.sent)


async def test_trickling_output_is_sent_without_waiting_for_the_end():
    recorder = Recorder()
    streamer = OutputStreamer(recorder.send, flush_seconds=0.1)
    streamer.start()

    await streamer.write("stdout", b"tick\n")
    await asyncio.sleep(0.35)

    assert recorder.text() == "tick\n"
    await finish(streamer)


async def test_detach_returns_what_the_relay_has_not_acknowledged():
    recorder = Recorder()
    recorder.gate.clear()
    streamer = OutputStreamer(recorder.send)
    streamer.start()

    await streamer.write("stdout", b"a\n")
    await streamer.write("stderr", b"b\n")
    await streamer.close()
    left = await streamer.detach()

    assert left == [Chunk(0, "stdout", "a\n"), Chunk(1, "stderr", "b\n")]
    assert recorder.sent == []


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_hundreds_of_megabytes_of_output_keep_memory_bounded(
    relay: FakeRelay, make_config, start_agent
):
    total = 200_000_000
    run = relay.add_run(f"yes 0123456789abcdef | head -c {total}")
    baseline = rss_bytes()
    peak = baseline

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    await start_agent(make_config(max_output_bytes=1024 * 1024))
    await relay.wait_until(lambda: run.status, seconds=30, what="finish")
    sampler.cancel()

    dropped = total - 1024 * 1024 - 64 * 1024
    marker = f"\n[relay-agent: {dropped} bytes of output dropped]\n"
    text = run.text()
    assert len(text) == 1024 * 1024 + len(marker) + 64 * 1024
    assert marker in text
    assert text.startswith("0123456789abcdef\n0123")
    assert run.finish["exit_code"] == 0
    assert peak - baseline < 60 * 1024 * 1024
