"""The ledger: blocks and their Merkle tx root (block.py, merkle.py), the StateView seam the rules code against
(state_view.py), the TxExecutor seam the chain calls (executor.py), and the LevelDB StateStore with its
incremental state root and snapshots (store.py composing schema.py, apply.py, committed_view.py,
state_root.py, buckets.py, snapshot.py, migrate.py). Pure: no I/O besides LevelDB, no clocks."""
