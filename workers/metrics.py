"""Prometheus metrics of the worker processes (served by `worker` on HS_WORKER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter(
    "hs_jobs_total", "Jobs run, by queue, task and outcome", ["queue", "task", "outcome"]
)
JOB_SECONDS = Histogram("hs_job_duration_seconds", "Job run time", ["queue", "task"])
EXPIRY_LAG = Histogram(
    "hs_expiry_lag_seconds",
    "How long after expires_at a session was expired",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
EXPIRY_PARTITIONS = Gauge("hs_expiry_partitions_held", "Partitions this worker expires")
QUEUE_DEPTH = Gauge("hs_queue_depth", "Jobs waiting in an arq queue", ["queue"])
WEBHOOK_ATTEMPTS = Counter(
    "hs_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)
FRAUD_SESSIONS = Counter(
    "hs_fraud_sessions_total",
    "Sessions the scoring loop handled: scored, or skipped and why",
    ["outcome"],
)
FRAUD_BATCH = Histogram(
    "hs_fraud_batch_size",
    "Sessions scored together (one partition's new sessions from one read)",
    buckets=(1, 5, 10, 25, 50, 100, 200, 400),
)
FRAUD_LAG = Histogram(
    "hs_fraud_lag_seconds",
    "How long after its `created` event a session's risk decision was written",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
