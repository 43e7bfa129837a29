"""Who the chaos run reads as (CONTRACT §6): an org that may read everything the checker collects."""

from __future__ import annotations

from node.chaos.cluster import orgs_for
from node.chaos.workload import reader_org


def test_the_regulator_reads_when_there_is_one_else_the_core_enterprise() -> None:
    orgs = orgs_for(5)
    assert reader_org(orgs) == "pbc"
    assert [o for o, _, role in orgs if role == "regulator"] == ["pbc"]
    assert orgs[-1][0] == "pbc"  # last: the first n orgs run the n nodes, so the regulator runs none
    assert reader_org([o for o in orgs if o[2] != "regulator"]) == "geely"
