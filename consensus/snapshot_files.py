"""Snapshot files: the data of the Raft log's snapshots, one file each beside its LevelDB.

Snapshots are files in `<raft>.snapshots/` (`<index, 20 digits>.snap`; etcd keeps `.snap` files beside its WAL the
same way), those this node takes and those it receives from the leader; the store's `s` record holds no data, but
the file's size and crc32 (consensus/log_records.py). Writing hundreds of MB into the Raft log's LevelDB instead
stalled its synced appends (memtable switches, level-0 stops) long enough for an election, and held the data again
in a memtable. A file is written from a stream of chunks to `<name>.partial`, fsynced, renamed into place and its
directory fsynced, so that a crash leaves either no file, a partial one or the whole one, never a torn `.snap`.

Plain file I/O, no LevelDB: the store calls it from the driver's writer thread as well as from its loop.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.fsync import fsync_dir
from consensus.invariant import require
from consensus.storage import CorruptionError

SNAPSHOT_DIR_SUFFIX = ".snapshots"
"""The directory of a store's snapshot files is its LevelDB's path with this suffix."""
SNAPSHOT_READ_BYTES = 4 << 20
"""Read size when checking a snapshot file's checksum at open."""
_PARTIAL_SUFFIX = ".partial"


class MappedSnapshotData:
    """A snapshot file's bytes, mapped read-only. A leader slices the chunks it ships out of it: reading the whole
    file into memory to ship it held the driver's event loop ~0.2 s and the state's size in RSS for a 200 MB
    state; mapped pages are read on demand and belong to the page cache. Slices are bytes (`SnapshotBytes`);
    equality compares contents. The mapping stays valid if the file is removed meanwhile (a newer snapshot)."""

    __slots__ = ("_map",)

    def __init__(self, path: str, size: int) -> None:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise CorruptionError(f"snapshot file {path} does not match its record (size)")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def __len__(self) -> int:
        return 0 if self._map is None else len(self._map)

    def __getitem__(self, key: slice, /) -> bytes:
        return b"" if self._map is None else self._map[key]

    def __bytes__(self) -> bytes:
        return self[:]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MappedSnapshotData | bytes | bytearray | memoryview):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def write_snapshot_file(directory: str, final: str, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Write `chunks` to `final` crash-safely (a `.partial` file, fsync, rename, directory fsync); (size, crc32)."""
    os.makedirs(directory, exist_ok=True)
    partial = final + _PARTIAL_SUFFIX
    crc = size = 0
    with open(partial, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
        require(os.fstat(f.fileno()).st_size == size, f"snapshot file {partial} holds other than its {size} bytes")
    os.replace(partial, final)
    fsync_dir(directory)
    return size, crc


@dataclass(frozen=True, slots=True)
class SnapshotFiles:
    """The snapshot files of one store, in `directory`. Immutable: safe to share with the writer thread."""

    directory: str

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"{index:020d}.snap")

    def write(self, index: int, chunks: Iterable[bytes]) -> tuple[int, int]:
        """The snapshot at `index` from `chunks`, durably in place; its (size, crc32)."""
        return write_snapshot_file(self.directory, self.path(index), chunks)

    def check(self, index: int, size: int, crc: int) -> None:
        """The file of the snapshot at `index` must have its record's size and crc32 (`CorruptionError`). Read in
        SNAPSHOT_READ_BYTES pieces: the file may be far larger than what the node should hold at once."""
        name = self.path(index)
        got_crc = got_size = 0
        try:
            with open(name, "rb") as f:
                while chunk := f.read(SNAPSHOT_READ_BYTES):
                    got_crc = zlib.crc32(chunk, got_crc)
                    got_size += len(chunk)
        except OSError as exc:
            raise CorruptionError(f"snapshot file {name} unreadable: {exc}") from None
        if got_size != size or got_crc != crc:
            raise CorruptionError(f"snapshot file {name} does not match its record (size or checksum)")

    def mapped(self, index: int, size: int) -> MappedSnapshotData:
        """The data of the snapshot at `index`, mapped; only its size is checked (`CorruptionError`)."""
        name = self.path(index)
        try:
            return MappedSnapshotData(name, size)
        except (OSError, ValueError) as exc:
            raise CorruptionError(f"snapshot file {name} unreadable: {exc}") from None

    def remove_all_but(self, keep_index: int | None) -> None:
        """Remove the files of every snapshot but the one at `keep_index` (a crash can leave a newer half-written
        one, or an older one not yet removed)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        keep = None if keep_index is None else os.path.basename(self.path(keep_index))
        for name in names:
            if name != keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
