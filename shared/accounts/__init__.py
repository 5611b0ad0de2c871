"""Per-account settings: model.py (pure) · store.py (all Redis) · service.py (rules)."""
