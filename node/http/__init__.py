"""The node's HTTP surface: API routes, OpenAPI document, dashboard, metrics and alarms."""
