"""The deterministic Raft simulator: `python -m consensus.sim` (`./scripts/simulate`).

- `simulation.py`: the event loop, the chaos schedule (workload and faults) and `run_seed`.
- `node.py`: one node's driver state and its hash-chain application.
- `storage.py`: in-memory Storage whose unsynced writes a crash may lose.
- `network.py`: drop / duplicate / delay / reorder, and partitions as sets of cut links.
- `checkers.py`: Raft's safety properties (Figure 3) and ours, checked after every step.
"""
