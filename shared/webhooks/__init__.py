"""Webhooks: per-account endpoints, signed deliveries with retries (docs/webhooks.md)."""
