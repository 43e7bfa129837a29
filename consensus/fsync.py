"""Making file-system changes survive a power loss: fsync of a directory (after a create or rename in it) and of
every file in a directory. Shared by the Raft log's snapshot files (consensus/snapshot_files.py) and the ledger's
state store, which both move whole files into place (snapshot files, an imported store)."""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    """fsync a directory, so that the names created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync every file in a flat directory, then the directory (LevelDB leaves what it writes unsynced unless
    asked per write)."""
    for name in os.listdir(path):
        fd = os.open(os.path.join(path, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(path)
