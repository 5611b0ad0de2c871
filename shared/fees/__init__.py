"""Convenience fees: model.py (pure: schedule, math, quote rules) · store.py (quotes in Redis) ·
service.py (FeeService: quotes, and the fee confirm charges)."""
