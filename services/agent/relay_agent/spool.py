"""Finished results on disk until the relay has them.

A result is written (atomically) before it is sent and removed only once the relay
acknowledged it, so neither the relay going away nor the agent being killed loses it.
A result the relay refuses for good is moved to rejected/ rather than deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_agent.config import atomic_write
from relay_agent.output import Chunk

log = logging.getLogger(__name__)

VERSION = 1


@dataclass
class SpoolRecord:
    run_id: int
    lease_token: str
    finish: dict[str, Any]
    chunks: list[Chunk] = field(default_factory=list)
    job_name: str = ""
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "run_id": self.run_id,
            "lease_token": self.lease_token,
            "job_name": self.job_name,
            "created_at": self.created_at,
            "finish": self.finish,
            "chunks": [chunk.to_json() for chunk in self.chunks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpoolRecord:
        if data.get("version") != VERSION:
            raise ValueError(f"unknown spool version {data.get('version')!r}")
        return cls(
            run_id=int(data["run_id"]),
            lease_token=str(data["lease_token"]),
            finish=dict(data["finish"]),
            chunks=[Chunk.from_json(chunk) for chunk in data["chunks"]],
            job_name=str(data.get("job_name", "")),
            created_at=float(data["created_at"]),
        )


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.rejected = self.directory / "rejected"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_for(self, record: SpoolRecord) -> Path:
        # One file per attempt: the same run may come back to us with a new lease.
        lease = hashlib.sha256(record.lease_token.encode()).hexdigest()[:16]
        return self.directory / f"run-{record.run_id}-{lease}.json"

    def save(self, record: SpoolRecord) -> Path:
        path = self.path_for(record)
        atomic_write(path, json.dumps(record.to_json()).encode("utf-8"))
        return path

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def reject(self, path: Path, reason: str) -> None:
        self.rejected.mkdir(mode=0o700, exist_ok=True)
        target = self.rejected / path.name
        os.replace(path, target)
        log.error(
            "result %s refused by the relay (%s); kept in %s", path.name, reason, target
        )

    def pending(self) -> list[tuple[Path, SpoolRecord]]:
        """Results left from before, oldest first; unreadable ones are set aside."""
        self._remove_temp_files()
        found = []
        for path in sorted(self.directory.glob("run-*.json")):
            try:
                record = SpoolRecord.from_json(json.loads(path.read_text("utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.reject(path, f"unreadable: {exc}")
                continue
            found.append((path, record))
        found.sort(key=lambda item: item[1].created_at)
        return found

    def _remove_temp_files(self) -> None:
        # A temp file is a write that never reached its rename: the run was not done.
        for path in self.directory.glob(".run-*.tmp"):
            self.remove(path)
