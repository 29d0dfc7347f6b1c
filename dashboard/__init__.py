"""The web process: ops dashboard, JSON API, payment webhooks, health and metrics."""
