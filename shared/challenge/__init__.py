"""SMS challenges: model.py (pure rules) · store.py (dev outbox in Redis) · sms.py (senders) ·
service.py (send and verify)."""
