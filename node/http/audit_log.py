"""The node's audit log: one JSON line per authenticated read (CONTRACT §6), in <data_dir>/audit.log.

Each line is `{"ts", "org", "method", "route", "resource", "status"}`: when (ms, the node's clock), which org, the
route template (`/v1/certs/{id}`, never the raw path), the resource's id (the path parameters joined by "/"),
and the status answered, refusals included. The file is bounded: past AUDIT_LOG_BYTES_MAX it is renamed to
audit.log.1 (replacing the previous one) and a new one begins, so at most two files are ever kept. Each line is
flushed as written (a crash loses nothing the node answered), not fsynced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from consensus.invariant import require

AUDIT_LOG_NAME = "audit.log"
AUDIT_LOG_BYTES_MAX = 16 << 20
"""Size at which the log rotates; with the one old file kept, the audit log holds at most twice this."""
AUDIT_LOG_OLD_SUFFIX = ".1"


class AuditLog:
    def __init__(self, path: Path, bytes_max: int = AUDIT_LOG_BYTES_MAX) -> None:
        require(bytes_max > 0, "audit log size cap")
        self.path = path
        self.old_path = path.with_name(path.name + AUDIT_LOG_OLD_SUFFIX)
        self.bytes_max = bytes_max
        self._file: IO[bytes] | None = None
        self._size = 0

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one entry (raises OSError if the disk refuses; the caller decides what that means)."""
        line = (json.dumps(entry, separators=(",", ":"), sort_keys=True, default=str) + "\n").encode()
        f = self._open()
        if self._size > 0 and self._size + len(line) > self.bytes_max:
            self._rotate()
            f = self._open()
        f.write(line)
        f.flush()
        self._size += len(line)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, self.old_path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
