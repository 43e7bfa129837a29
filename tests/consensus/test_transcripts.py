"""Scripted interaction transcripts (etcd-io/raft's datadriven testdata): each file in transcripts/ is a
script (`# comment` and `> command` lines) followed, command by command, by the output it must produce:
every Ready printed whole (soft and hard state, entries to persist, must_sync, snapshot, committed entries,
messages, read states) and every delivery round. Commands and output format: tests/consensus/transcript.py.

After an intended behaviour change, regenerate and review the diff:

    ECERT_REWRITE_TRANSCRIPTS=1 .venv/bin/python -m pytest -q tests/consensus/test_transcripts.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.consensus.transcript import render

DIR = Path(__file__).parent / "transcripts"
REWRITE_ENV = "ECERT_REWRITE_TRANSCRIPTS"


@pytest.mark.parametrize("path", sorted(DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    expected = path.read_text()
    got = render(expected)
    if os.environ.get(REWRITE_ENV):
        path.write_text(got)
        return
    if got != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), got.splitlines(keepends=True),
            fromfile=f"{path.name} (stored)", tofile=f"{path.name} (produced)"))
        pytest.fail(f"{path.name} differs from what the core produces now:\n{diff}\n"
                    f"If the change is intended: {REWRITE_ENV}=1 .venv/bin/python -m pytest -q "
                    f"tests/consensus/test_transcripts.py, then review the diff of {DIR.name}/{path.name}.",
                    pytrace=False)

