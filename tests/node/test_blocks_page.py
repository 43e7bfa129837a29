"""`GET /v1/blocks` on a real node (issue 16 item 5): a page is headers and tx counts, the tx ids only with
`tx_ids=true`, and then bounded by HTTP_BLOCKS_PAGE_TX_IDS_MAX ids; `GET /v1/blocks/{h}` keeps its shape.

The chain is a few blocks of BLOCK_TXS real signed txs each (POST /v1/txs, one batch a block), read anonymously:
the route is public (CONTRACT §6), headers and tx ids alike, as `GET /v1/blocks/{h}` already shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import requests

import node.server
from tests.node.live_node import LiveNode

BLOCKS = 5
BLOCK_TXS = 200
HEADER_KEYS = {"height", "prev_hash", "tx_root", "time", "proposer", "hash", "tx_count"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    # A batch arrives whole within the block timeout, so each batch is one block of BLOCK_TXS (the tests below
    # read the counts back rather than rely on it).
    node = LiveNode(tmp_path_factory.mktemp("blocks-page"), "ecert-blocks-page",
                    {"block_max_txs": BLOCK_TXS, "block_timeout_ms": 50})
    node.start()
    try:
        for b in range(BLOCKS):
            raws = [node.raw_tx("tier1", "trade.anchor", {"doc_id": f"D{b}-{i}", "kind": "contract",
                                                          "doc_hash": "cd" * 32, "counterparty": "geely",
                                                          "amount": 1000}) for i in range(BLOCK_TXS)]
            got = requests.post(node.base + "/v1/txs?wait=commit", data=msgpack.packb(raws),
                                headers={"Content-Type": "application/msgpack"}, timeout=60)
            assert got.status_code == 200, got.text[:300]
            assert {r["status"] for r in got.json()["results"]} == {"committed"}
        yield node
    finally:
        node.stop()


def page(live: LiveNode, query: str) -> tuple[list[dict[str, Any]], int]:
    """The blocks of `GET /v1/blocks?query` (anonymous) and the answer's size in bytes."""
    got = requests.get(f"{live.base}/v1/blocks?{query}", headers={"Accept": "application/json"}, timeout=30)
    assert got.status_code == 200, got.text[:300]
    blocks: list[dict[str, Any]] = got.json()["blocks"]
    return blocks, len(got.content)


def block(live: LiveNode, height: int) -> dict[str, Any]:
    status, body = live.get(f"/v1/blocks/{height}")
    assert status == 200
    assert isinstance(body, dict)
    return body


def test_a_page_is_headers_and_tx_counts(live: LiveNode) -> None:
    blocks, _ = page(live, "limit=100")
    assert {frozenset(b) for b in blocks} == {frozenset(HEADER_KEYS)}  # no tx ids, nothing else
    assert sum(b["tx_count"] for b in blocks) == BLOCKS * BLOCK_TXS
    assert [b["height"] for b in blocks] == list(range(live.node.store.height, 0, -1))
    for b in blocks:
        full = block(live, b["height"])
        assert b == {k: full[k] for k in HEADER_KEYS} and b["tx_count"] == len(full["tx_ids"])


def test_tx_ids_on_request_are_the_blocks_own(live: LiveNode) -> None:
    headers, _ = page(live, "limit=100")
    blocks, _ = page(live, "limit=100&tx_ids=true")
    assert [{k: b[k] for k in HEADER_KEYS} for b in blocks] == headers
    for b in blocks:
        assert set(b) == HEADER_KEYS | {"tx_ids"}
        assert b["tx_ids"] == block(live, b["height"])["tx_ids"] and len(b["tx_ids"]) == b["tx_count"]
    assert page(live, "limit=100&tx_ids=false")[0] == headers


def test_a_block_keeps_its_shape_and_gains_its_count(live: LiveNode) -> None:
    full = block(live, live.node.store.height)
    assert set(full) == HEADER_KEYS | {"tx_ids", "txs"}  # CONTRACT §4: header and its tx ids (`txs`: the same)
    assert full["txs"] == full["tx_ids"] and full["tx_count"] == len(full["tx_ids"])


@pytest.mark.parametrize("value", ["yes", "1", "0", "True", "FALSE", "", "true,false", "t"])
def test_a_tx_ids_flag_other_than_true_or_false_is_refused(live: LiveNode, value: str) -> None:
    status, body = live.get(f"/v1/blocks?tx_ids={value}")
    assert status == 400
    assert body["error"]["code"] == "bad_parameter" and "tx_ids must be true or false" in body["error"]["message"]


def test_without_tx_ids_a_page_is_a_small_fraction(live: LiveNode) -> None:
    headers, header_bytes = page(live, "limit=100")
    with_ids, ids_bytes = page(live, "limit=100&tx_ids=true")
    assert len(headers) == len(with_ids) >= BLOCKS
    id_bytes = sum(len(json.dumps(b["tx_ids"], separators=(",", ":"))) for b in with_ids)
    print(f"page of {len(headers)} blocks, {BLOCKS * BLOCK_TXS} txs: {header_bytes} bytes as headers, "
          f"{ids_bytes} with tx ids")
    assert header_bytes < 400 * len(headers)  # a header and a count: a few hundred bytes a block
    assert ids_bytes > 30 * header_bytes and ids_bytes - header_bytes >= id_bytes


@pytest.mark.parametrize("budget", [1, BLOCK_TXS, 2 * BLOCK_TXS + 1, 10 * BLOCKS * BLOCK_TXS])
def test_a_page_with_tx_ids_stops_at_its_id_budget(live: LiveNode, monkeypatch: pytest.MonkeyPatch,
                                                   budget: int) -> None:
    counts = [b["tx_count"] for b in page(live, "limit=100")[0]]
    monkeypatch.setattr(node.server, "HTTP_BLOCKS_PAGE_TX_IDS_MAX", budget)
    expected, listed = 0, 0
    for count in counts:  # newest first, while the ids fit; one block always
        if expected and listed + count > budget:
            break
        expected, listed = expected + 1, listed + count
    blocks, _ = page(live, "limit=100&tx_ids=true")
    assert len(blocks) == expected and sum(len(b["tx_ids"]) for b in blocks) == listed
    assert len(page(live, "limit=100")[0]) == len(counts)  # the budget is on ids: headers pages are whole
    # Paging on from the lowest height returned still reaches every block.
    seen, before = [b["height"] for b in blocks], min(b["height"] for b in blocks)
    while before > 1:
        more, _ = page(live, f"limit=100&tx_ids=true&before={before}")
        assert more
        seen += [b["height"] for b in more]
        before = min(b["height"] for b in more)
    assert seen == list(range(len(counts), 0, -1))
