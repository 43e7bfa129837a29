"""Clients of the node API: one HTTP client with signing, the `ecert` CLI, the demo."""
