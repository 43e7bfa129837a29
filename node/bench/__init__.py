"""Throughput and latency benchmarks on real clusters: ours side by side with etcd (issue 6)."""
