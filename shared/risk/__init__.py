"""Fraud scoring: rules.py (pure rules) · store.py (velocity in Redis) · service.py (a run)."""
