"""Trade background at every hop (issue 14, item 3): credit only travels along real, confirmed trade.

Issuance already draws on confirmed invoices between the debtor and the first holder (ecert/rules.py
`_allocate_invoices`). Here the same holds for every later hop and for the documents themselves:

* `ecert.transfer` lists `trade_docs`: confirmed contracts or invoices between the holder and each recipient.
  Each recipient's amount is drawn greedily, in the order listed, from the listed documents whose two parties
  are exactly {holder, that recipient}; every listed document must belong to one recipient, and every
  recipient's amount must be covered in full. The draws are recorded on the recipient's child certificate
  (`Cert.trade_docs`) and on each document (`TradeDoc.drawn`); a transfer is final, so draws are never given
  back. Without `trade_docs` a transfer draws nothing — refused (`trade_docs_required`) on a chain whose
  parameter `transfer_requires_trade_docs` is on. The remainder the holder keeps needs no background.
* `trade.anchor` of an invoice may name its `contract_id`: a confirmed contract between the same two parties
  (either may have anchored either document), whose amount its invoices stay within. On a chain with
  `invoice_requires_contract` on, every invoice must name one.

A document's **headroom** is one budget for all three uses: `amount - backed (issuance) - drawn (transfers)
- invoiced (contracts: the invoices under it)`, never below 0 (asserted in ecert/state.py `put_doc`). So a
contract and an invoice under it cannot back the same trade twice, and an invoice that backs an issue cannot
back a transfer the other way for the same amount.

A document under an unresolved dispute is locked (ecert/disputes.py): nothing draws on it, and no invoice is
anchored under it.
"""

from __future__ import annotations

from ecert import codes
from ecert import state as s
from ecert.disputes import check_doc_unlocked
from ecert.errors import TxRejected
from ecert.tx import TradeAnchor
from ledger.state_view import StateView

TRADE_DOC_KINDS = ("contract", "invoice")
"""The kinds of document that show a trade (deliveries and payments follow from one)."""


def headroom(doc: s.TradeDoc) -> int:
    """What the document can still back, draw or hold invoices for."""
    return doc.amount - doc.backed - doc.drawn - doc.invoiced


Draws = list[list[tuple[s.TradeDoc, int]]]
"""Per recipient, in the order of the transfer: (document, amount drawn from it), only positive draws."""


def allocate_transfer(view: StateView, holder: str, recipients: list[tuple[str, int]],
                      doc_ids: tuple[str, ...] | None) -> Draws:
    """Back each recipient's amount with the listed documents (reads only). `doc_ids` None: no background
    (the caller decides whether that is allowed); every recipient draws nothing."""
    if doc_ids is None:
        return [[] for _ in recipients]
    index = {org: i for i, (org, _) in enumerate(recipients)}
    docs: list[tuple[s.TradeDoc, int]] = []  # (document, recipient index), in the order listed
    for doc_id in doc_ids:
        doc = s.get_doc(view, doc_id)
        if doc is None:
            raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {doc_id!r}")
        if doc.kind not in TRADE_DOC_KINDS:
            raise TxRejected(codes.NOT_A_TRADE_DOC, f"trade document {doc_id} is a {doc.kind}, not a contract or "
                                                    "an invoice")
        if doc.status != s.DOC_CONFIRMED:
            raise TxRejected(codes.DOC_NOT_CONFIRMED, f"trade document {doc_id} is not confirmed by both parties")
        other = doc.counterparty if doc.issuer == holder else doc.issuer if doc.counterparty == holder else None
        if other is None or other not in index:
            raise TxRejected(codes.TRADE_DOC_PARTIES_MISMATCH,
                             f"trade document {doc_id} is not between the holder and a recipient")
        check_doc_unlocked(view, doc_id)
        docs.append((doc, index[other]))
    draws: Draws = []
    for i, (org, amount) in enumerate(recipients):
        remaining = amount
        mine: list[tuple[s.TradeDoc, int]] = []
        for doc, owner in docs:
            if owner != i or remaining == 0:
                continue
            take = min(remaining, headroom(doc))
            if take > 0:
                mine.append((doc, take))
                remaining -= take
        if remaining > 0:
            raise TxRejected(codes.TRADE_HEADROOM_EXCEEDED,
                             f"the trade documents with {org} can back {amount - remaining} more, not {amount}")
        draws.append(mine)
    return draws


def write_draws(view: StateView, draws: Draws) -> None:
    """Record the draws on the documents (each document belongs to one recipient, so is drawn once here)."""
    for mine in draws:
        for doc, take in mine:
            s.put_doc(view, doc._replace(drawn=doc.drawn + take))


def check_invoice_contract(view: StateView, signer: str, body: TradeAnchor, required: bool) -> s.TradeDoc | None:
    """The contract a new invoice is anchored under (reads only); None if it names none, which `required`
    refuses."""
    if body.contract_id is None:
        if required and body.kind == "invoice":
            raise TxRejected(codes.CONTRACT_REQUIRED, "an invoice must name the contract it belongs to")
        return None
    if body.kind != "invoice":
        raise TxRejected(codes.NOT_AN_INVOICE, f"only an invoice names a contract, not a {body.kind}")
    contract = s.get_doc(view, body.contract_id)
    if contract is None:
        raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {body.contract_id!r}")
    if contract.kind != "contract":
        raise TxRejected(codes.NOT_A_CONTRACT, f"trade document {contract.id} is not a contract")
    if contract.status != s.DOC_CONFIRMED:
        raise TxRejected(codes.DOC_NOT_CONFIRMED, f"contract {contract.id} is not confirmed by both parties")
    if {contract.issuer, contract.counterparty} != {signer, body.counterparty}:
        raise TxRejected(codes.CONTRACT_PARTIES_MISMATCH,
                         f"contract {contract.id} is not between the invoice's two parties")
    check_doc_unlocked(view, contract.id)
    if body.amount > headroom(contract):
        raise TxRejected(codes.CONTRACT_AMOUNT_EXCEEDED,
                         f"contract {contract.id} has {headroom(contract)} left for invoices, not {body.amount}")
    return contract


def write_invoice_contract(view: StateView, contract: s.TradeDoc | None, amount: int) -> None:
    if contract is not None:
        s.put_doc(view, contract._replace(invoiced=contract.invoiced + amount))
