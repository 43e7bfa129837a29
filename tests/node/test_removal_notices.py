"""A node believes it was removed only when a quorum of the voters it knows says so (node/removal_notices.py)."""

from __future__ import annotations

from node.removal_notices import RemovalNotices


def test_a_quorum_of_the_known_voters_must_say_it() -> None:
    n = RemovalNotices("d")
    voters = {"a", "b", "c", "d"}  # d, a voter of four, was removed: three others must say it
    assert not n.note("a", voters)
    assert not n.note("a", voters)  # the same peer twice is one voice
    assert not n.note("x", voters)  # a node it does not know as a voter does not count
    assert not n.note("b", voters)
    assert n.note("c", voters)


def test_a_learner_needs_a_majority_of_the_voters_and_a_lone_node_never_believes_it() -> None:
    n = RemovalNotices("r")
    voters = {"a", "b", "c"}
    assert not n.note("a", voters)
    assert n.note("b", voters)
    assert not RemovalNotices("a").note("a", {"a"})
    assert not RemovalNotices("a").note("b", {"a"})
