"""The E-certificate domain: transactions, rules and state of supply-chain finance (CONTRACT §3).

Pure and deterministic: no I/O, no clocks, no floats. Modules:
    codes, errors   rejection codes (stable API) and the exception hierarchy
    tx              strict envelope/payload codec, Ed25519 signatures, tx ids, builders, JSON form
    keys            org keys: Ed25519 seed -> signing key and X25519 box key
    genesis         the genesis document, its hash and its state writes
    state           records and the state key schema (with holdings and lineage indexes)
    lifecycle       every status transition, in one table
    rules           one pure transition per tx kind
    executor        EcertExecutor, the ledger's TxExecutor: decode, authenticate, apply
    admission       cheap precheck before a node queues a tx
    queries         JSON-ready reads for the HTTP API
    privacy         sealed-box trade documents bound to their hash
    invariants      whole-state checks for debug runs and tests
    membership      node membership in state: records, proposals, their keys (CONTRACT §6)
    governance      member.propose / member.approve rules and the membership reads
    reconcile       next_conf_change: the one Raft change that brings Raft to the state membership
The rules, check by check, are in docs/RULES.md.
"""
