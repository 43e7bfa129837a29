"""Every rejection code ecert/ can give, in one place.

A code is stable public API: clients match on it (CONTRACT §4 `error.code`). Add codes, never rename one.
docs/RULES.md explains each code and which checks give it; tests/ecert assert that every code here is hit.
"""

from __future__ import annotations

# --- decoding (ecert/tx.py): the bytes are not a well-formed transaction ---------------------------------------
TX_TOO_LARGE = "tx_too_large"
MALFORMED_ENVELOPE = "malformed_envelope"
MALFORMED_PAYLOAD = "malformed_payload"
UNKNOWN_FIELD = "unknown_field"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
BAD_AMOUNT = "bad_amount"
WRONG_CHAIN_ID = "wrong_chain_id"
SIGNER_MISMATCH = "signer_mismatch"
UNKNOWN_TX_TYPE = "unknown_tx_type"

# --- authentication (ecert/executor.py) ---------------------------------------------------------------------------
UNKNOWN_SIGNER = "unknown_signer"
SIGNER_NOT_ACTIVE = "signer_not_active"
BAD_SIGNATURE = "bad_signature"
NONCE_REUSED = "nonce_reused"
ROLE_NOT_ALLOWED = "role_not_allowed"

# --- organisations ------------------------------------------------------------------------------------------------
UNKNOWN_ORG = "unknown_org"
ORG_EXISTS = "org_exists"
ORG_NOT_ACTIVE = "org_not_active"
NOT_A_CORE = "not_a_core"
NOT_A_BANK = "not_a_bank"
SAME_PARTY = "same_party"
INVALID_STATUS_TRANSITION = "invalid_status_transition"
REGULATOR_GENESIS_ONLY = "regulator_genesis_only"
REGULATOR_STATUS_FIXED = "regulator_status_fixed"
REGULATOR_NOT_PARTY = "regulator_not_party"
BAD_KEY_PROOF = "bad_key_proof"

# --- credit lines -------------------------------------------------------------------------------------------------
LIMIT_BELOW_USED = "limit_below_used"
EXPIRY_NOT_IN_FUTURE = "expiry_not_in_future"
NO_CREDIT_LINE = "no_credit_line"
CREDIT_LINE_EXPIRED = "credit_line_expired"
CREDIT_LIMIT_EXCEEDED = "credit_limit_exceeded"

# --- trade documents ----------------------------------------------------------------------------------------------
DOC_EXISTS = "doc_exists"
UNKNOWN_DOC = "unknown_doc"
NOT_COUNTERPARTY = "not_counterparty"
BAD_CIPHERTEXT_RECIPIENT = "bad_ciphertext_recipient"
NOT_AN_INVOICE = "not_an_invoice"
DOC_NOT_CONFIRMED = "doc_not_confirmed"
INVOICE_PARTIES_MISMATCH = "invoice_parties_mismatch"
INVOICE_HEADROOM_EXCEEDED = "invoice_headroom_exceeded"

# --- certificates -------------------------------------------------------------------------------------------------
UNKNOWN_CERT = "unknown_cert"
NOT_HOLDER = "not_holder"
NOT_DEBTOR = "not_debtor"
MATURITY_NOT_IN_FUTURE = "maturity_not_in_future"
CERT_MATURED = "cert_matured"
NOT_MATURED = "not_matured"
AMOUNTS_EXCEED_CERT = "amounts_exceed_cert"
SPLIT_SUM_MISMATCH = "split_sum_mismatch"
DUPLICATE_RECIPIENT = "duplicate_recipient"
NOT_FINANCE_BANK = "not_finance_bank"
DISCOUNT_TOO_LARGE = "discount_too_large"
LINEAGE_TOO_DEEP = "lineage_too_deep"

# --- trade background at every hop and KYC (ecert/trade_background.py) -------------------------------------------
TRADE_DOCS_REQUIRED = "trade_docs_required"
NOT_A_TRADE_DOC = "not_a_trade_doc"
TRADE_DOC_PARTIES_MISMATCH = "trade_doc_parties_mismatch"
TRADE_HEADROOM_EXCEEDED = "trade_headroom_exceeded"
CONTRACT_REQUIRED = "contract_required"
NOT_A_CONTRACT = "not_a_contract"
CONTRACT_PARTIES_MISMATCH = "contract_parties_mismatch"
CONTRACT_AMOUNT_EXCEEDED = "contract_amount_exceeded"
KYC_REQUIRED = "kyc_required"

# --- disputes and complaints (ecert/disputes.py) ------------------------------------------------------------------
CERT_DISPUTED = "cert_disputed"
DOC_DISPUTED = "doc_disputed"
CERT_NOT_LIVE = "cert_not_live"
NOT_SUBJECT_PARTY = "not_subject_party"
RESPONDENT_NOT_PARTY = "respondent_not_party"
UNKNOWN_DISPUTE = "unknown_dispute"
NOT_RESPONDENT = "not_respondent"
NOT_RESOLVER = "not_resolver"
DISPUTE_ESCALATED = "dispute_escalated"
UNKNOWN_COMPLAINT = "unknown_complaint"
TOO_MANY_COMPLAINTS = "too_many_complaints"
RESPONSE_DEADLINE_PASSED = "response_deadline_passed"
NOT_COMPLAINANT = "not_complainant"
RESPONSE_NOT_DUE = "response_not_due"

# --- payment, default, recourse, financing limits, revoke and acceptance (ecert/settlement.py, financing.py) ----
TERM_TOO_LONG = "term_too_long"
ACCEPTANCE_EXPIRED = "acceptance_expired"
CERT_PARTLY_PAID = "cert_partly_paid"
AMOUNT_EXCEEDS_DUE = "amount_exceeds_due"
NOT_A_PAYMENT = "not_a_payment"
PAYMENT_PARTIES_MISMATCH = "payment_parties_mismatch"
PAYMENT_EXCEEDS_DOC = "payment_exceeds_doc"
GRACE_NOT_OVER = "grace_not_over"
NOT_A_ROOT = "not_a_root"
LINEAGE_TOO_LARGE = "lineage_too_large"
NOTHING_TO_SETTLE = "nothing_to_settle"
UNKNOWN_CLAIM = "unknown_claim"
NOT_SELLER = "not_seller"
NOT_CLAIM_BANK = "not_claim_bank"
CLAIM_CLOSED = "claim_closed"
AMOUNT_EXCEEDS_CLAIM = "amount_exceeds_claim"
FINANCE_LIMIT_EXCEEDED = "finance_limit_exceeded"
NOT_CORE_OR_SUPPLIER = "not_core_or_supplier"

# --- membership governance (ecert/governance.py) -------------------------------------------------------------------
NOT_VOTING_ORG = "not_voting_org"
TOO_MANY_PROPOSALS = "too_many_proposals"
TOO_FEW_VOTERS = "too_few_voters"
REGULATOR_NODE = "regulator_node"
NOT_A_LEARNER = "not_a_learner"
UNKNOWN_NODE = "unknown_node"
NODE_REMOVED = "node_removed"
NODE_EXISTS = "node_exists"
NODE_PK_IN_USE = "node_pk_in_use"
ADDRESS_IN_USE = "address_in_use"
UNROUTABLE_ADDRESS = "unroutable_address"
MEMBERSHIP_FULL = "membership_full"
UNKNOWN_PROPOSAL = "unknown_proposal"
PROPOSAL_EXPIRED = "proposal_expired"
PROPOSAL_CLOSED = "proposal_closed"
OWN_PROPOSAL = "own_proposal"
ALREADY_APPROVED = "already_approved"

ALL_CODES: frozenset[str] = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
