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
