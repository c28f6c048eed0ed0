"""The spool: results on disk, written whole, read back in order."""

from __future__ import annotations

import os

from relay_agent.output import Chunk
from relay_agent.spool import Spool, SpoolRecord

FINISH = {"outcome": "exited", "exit_code": 0, "signal": None, "error": None}


def test_a_saved_record_reads_back_the_same(tmp_path):
    spool = Spool(tmp_path / "spool")
    record = SpoolRecord(41, "lt_a", FINISH, [Chunk(0, "stdout", "hi\n")], "backup")

    path = spool.save(record)

    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    assert spool.pending() == [(path, record)]
    assert os.listdir(tmp_path / "spool") == [path.name]


def test_the_same_run_with_a_new_lease_is_a_separate_result(tmp_path):
    spool = Spool(tmp_path)
    first = spool.save(SpoolRecord(41, "lt_a", FINISH, created_at=2.0))
    second = spool.save(SpoolRecord(41, "lt_b", FINISH, created_at=1.0))

    assert first != second
    assert [p for p, _ in spool.pending()] == [second, first]  # oldest first


def test_half_written_and_unreadable_files_do_not_block_the_rest(tmp_path):
    spool = Spool(tmp_path)
    good = spool.save(SpoolRecord(42, "lt_c", FINISH))
    (tmp_path / ".run-43-x.json.123.tmp").write_text('{"half')
    (tmp_path / "run-44-y.json").write_text("{broken")

    assert [p for p, _ in spool.pending()] == [good]
    assert not (tmp_path / ".run-43-x.json.123.tmp").exists()
    assert os.listdir(tmp_path / "rejected") == ["run-44-y.json"]


def test_remove_is_idempotent(tmp_path):
    spool = Spool(tmp_path)
    path = spool.save(SpoolRecord(45, "lt_d", FINISH))

    spool.remove(path)
    spool.remove(path)

    assert spool.pending() == []
