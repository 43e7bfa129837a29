"""Local operations: cluster control and the local-network launcher."""
