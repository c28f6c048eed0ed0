"""A run's output: appended chunk by chunk, capped to a head and a tail.

The first half of the cap keeps the start of the output for good; the second
half rolls, dropping its oldest bytes first, so the end of a long output is
always there too. Only one chunk is in memory at a time, however much a
command prints.
"""

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import run_output, runs
from relay.store.runs import Run

CUT_MARK = "\n[... {} bytes of output cut ...]\n"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _split_at_byte(text: str, limit: int) -> tuple[str, str]:
    """Split text so the first part is at most `limit` bytes, whole characters."""
    encoded = text.encode("utf-8")
    first = encoded[:limit].decode("utf-8", errors="ignore")
    return first, text[len(first) :]


async def append_chunk(
    connection: AsyncConnection,
    run: Run,
    seq: int,
    stream: str,
    data: str,
    limit_bytes: int,
) -> bool:
    """Store one chunk; False when this sequence number was stored already."""
    if run.output_last_seq is not None and seq <= run.output_last_seq:
        return False

    head_cap = limit_bytes // 2
    tail_cap = limit_bytes - head_cap
    head_used = min(run.output_bytes, head_cap)
    tail_kept = run.output_kept_bytes - head_used

    head, tail = _split_at_byte(data, head_cap - head_used)
    if head:
        await _insert(connection, run.id, seq, "head", stream, head)
    if tail:
        await _insert(connection, run.id, seq, "tail", stream, tail)
        tail_kept = await _roll_tail(
            connection, run.id, tail_kept + _size(tail), tail_cap
        )

    await connection.execute(
        update(runs)
        .where(runs.c.id == run.id)
        .values(
            output_bytes=run.output_bytes + _size(data),
            output_kept_bytes=head_used + _size(head) + tail_kept,
            output_last_seq=seq,
        )
    )
    return True


async def _insert(connection, run_id: int, seq: int, part: str, stream: str, data: str):
    await connection.execute(
        insert(run_output).values(
            run_id=run_id,
            seq=seq,
            part=part,
            stream=stream,
            size=_size(data),
            data=data,
        )
    )


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
