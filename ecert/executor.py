"""`EcertExecutor`: the ledger's `TxExecutor` for E-certificate transactions.

For each raw tx: decode (strict), authenticate, check the nonce, apply the kind's rule (ecert/rules.py), record
the nonce. Any broken rule becomes a rejected `TxOutcome` with the rule's code; the executor never raises for bad
input. An `InvariantViolation` (a bug, or corrupted state) does propagate: the ledger must not commit the block.

Authentication, in order (docs/RULES.md):
1. `org.register`: the signer must be the org being registered, and the signature must verify under the key in
   the body (the org is not on chain yet).
2. every other kind: the signer must be registered (`unknown_signer`), `active` (`signer_not_active`) and the
   signature must verify under its registered key (`bad_signature`): the key the state holds now, so after an
   `org.rotate_key` only the new key signs (also for the rest of the same block).
3. a regulator signs only the kinds in `rules.REGULATOR_TX_TYPES` (`role_not_allowed`).
4. the signer must not have used this nonce before (`nonce_reused`).

Each node verifies a signature once: admission (`ecert.admission.precheck`) and apply both call `authenticate`,
and a valid verification is remembered for the apply (see `_verified`). Only this process's own verifications
are remembered; nothing another node says is trusted.
"""

from __future__ import annotations

from ecert import codes, history, settlement
from ecert import state as s
from ecert.errors import TxRejected
from ecert.rules import REGULATOR_TX_TYPES, RULES
from ecert.tx import OrgRegister, Tx, decode_tx, raw_tx_id, verify_signature
from ledger.executor import BlockContext, TxOutcome
from ledger.state_view import StateView

VERIFIED_CACHE_MAX = 16384
"""Signatures remembered between admission and apply. Sized for queue_max (10,000) plus the blocks in flight;
an evicted entry only costs a second verification."""

_verified: dict[str, tuple[bytes, str]] = {}
"""tx id -> (signature, signer public key hex) that THIS process verified over the payload with that tx id.

A hit needs the same tx id (sha256 of the payload, so the same payload bytes), the same signature bytes and
the same key the state registers now: then Ed25519 verification is a pure function of inputs it already
answered "valid" for, so skipping it cannot change any outcome. Failures are not remembered (a bad signature is
verified again and rejected again), and a different signature over the same payload is verified on its own."""


def _verify_once(tx: Tx, sign_pk_hex: str, remember: bool) -> None:
    seen = _verified.get(tx.tx_id)
    if seen is not None and seen[0] == tx.sig and seen[1] == sign_pk_hex:
        if not remember:
            del _verified[tx.tx_id]  # the apply: a tx id is applied once, so the entry is spent
        return
    verify_signature(tx, sign_pk_hex)
    if not remember:
        return
    if len(_verified) >= VERIFIED_CACHE_MAX:
        del _verified[next(iter(_verified))]  # oldest first (dicts keep insertion order)
    _verified[tx.tx_id] = (tx.sig, sign_pk_hex)


def authenticate(view: StateView, tx: Tx, *, remember: bool = True) -> None:
    """Signer registered, active, signature valid under its key; nonce unused. Raises TxRejected.

    Admission calls this with `remember` (the default): a valid signature is remembered so that applying the
    same tx later on this node does not verify it again. Apply passes `remember=False` (it consumes entries)."""
    if tx.type == "org.register":
        body: OrgRegister = tx.body
        if body.org_id != tx.signer:
            raise TxRejected(codes.SIGNER_MISMATCH, "org.register must be signed by the org being registered")
        if s.get_org(view, tx.signer) is None:
            _verify_once(tx, body.sign_pk, remember)
        # else: rules reject with org_exists; verify under the registered key so a stranger learns nothing more
        else:
            _authenticate_registered(view, tx, require_active=False, remember=remember)
    else:
        _authenticate_registered(view, tx, require_active=True, remember=remember)
    if s.nonce_used(view, tx.signer, tx.nonce):
        raise TxRejected(codes.NONCE_REUSED, f"{tx.signer} already used nonce {tx.nonce!r}")


def _authenticate_registered(view: StateView, tx: Tx, require_active: bool, remember: bool) -> None:
    org = s.get_org(view, tx.signer)
    if org is None:
        raise TxRejected(codes.UNKNOWN_SIGNER, f"no organisation {tx.signer!r} is registered")
    if require_active and org.status != s.ORG_ACTIVE:
        raise TxRejected(codes.SIGNER_NOT_ACTIVE, f"signer {tx.signer} is {org.status}")
    _verify_once(tx, org.sign_pk, remember)
    if org.role == s.REGULATOR and tx.type not in REGULATOR_TX_TYPES:
        raise TxRejected(codes.ROLE_NOT_ALLOWED, f"the regulator does not sign {tx.type}")


class EcertExecutor:
    """Implements `ledger.executor.TxExecutor`. Holds only the chain id and a one-entry decode cache."""

    __slots__ = ("_last", "chain_id")

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        # The store calls tx_id(raw) then execute(view, raw, ctx) on the same bytes: decode once. A pure
        # function of `raw` (compared by value), so the cache cannot change any outcome.
        self._last: tuple[bytes, Tx | TxRejected, str] | None = None

    def _decode(self, raw: bytes) -> tuple[Tx | TxRejected, str]:
        last = self._last
        if last is not None and (last[0] is raw or last[0] == raw):
            return last[1], last[2]
        decoded: Tx | TxRejected
        try:
            decoded = decode_tx(raw, self.chain_id)
            tx_id = decoded.tx_id
        except TxRejected as exc:
            decoded, tx_id = exc, raw_tx_id(raw)
        self._last = (raw, decoded, tx_id)
        return decoded, tx_id

    def tx_id(self, raw: bytes) -> str:
        return self._decode(raw)[1]

    def begin_block(self, view: StateView, ctx: BlockContext) -> None:
        """The ledger's block-begin hook (ledger/apply.py), before the block's first tx: what falls due at block
        time without a tx — roots past their acceptance deadline are cancelled (ecert/settlement.py). Part of the
        block's writes, so every node makes them and the state root covers them."""
        history.record_expired(view, settlement.begin_block(view, ctx.time), ctx.height)

    def execute(self, view: StateView, raw: bytes, ctx: BlockContext) -> TxOutcome:
        tx, tx_id = self._decode(raw)
        if isinstance(tx, TxRejected):
            return TxOutcome.rejected(tx_id, tx.code, tx.message)
        try:
            authenticate(view, tx, remember=False)
            result = RULES[tx.type](view, tx, ctx.time)
        except TxRejected as exc:
            return TxOutcome.rejected(tx.tx_id, exc.code, exc.message)
        history.record(view, tx, result, ctx.height)  # the audit trail: nothing for a transfer (ecert/history.py)
        s.mark_nonce(view, tx.signer, tx.nonce)
        return TxOutcome.committed(tx.tx_id, result)
