"""Steady expiry: `--rate` sessions fall due every second for `--seconds` seconds (evenly
spread within each second), one real worker process (`--queues expiry`); prints the lag
(`hosted_session.expired` stream entry time minus `expires_at`) percentiles over all of them,
and the p99 of each third of the run (its spread), as one JSON line. Usage:

    .venv/bin/python -m bench.expiry_steady [--rate 1000] [--seconds 60] [--workers 1]

All sessions are written before the first falls due (bench/expiry_burst.py `run_expiry`), so
the worker expires them with nothing else running. Own key prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json

from bench.expiry_burst import lag_figures, run_expiry
from bench.load import percentile


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000, help="sessions due per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args(argv)
    count = args.rate * args.seconds

    def offset(i: int) -> int:
        return int(i * 1000 // args.rate)

    due, lags, facts = run_expiry(args.redis_url, count, offset, workers=args.workers)
    start = min(due.values())
    window = args.seconds * 1000 / 3
    thirds: list[list[int]] = [[], [], []]
    for session_id, lag in lags.items():
        thirds[min(2, int((due[session_id] - start) / window))].append(lag)
    print(
        json.dumps(
            {
                "rate": args.rate,
                "seconds": args.seconds,
                "workers": args.workers,
                "sessions": count,
                "expired": len(lags),
                **lag_figures(list(lags.values())),
                "lag_ms_p99_thirds": [round(percentile(sorted(t), 99)) for t in thirds],
                **facts,
            }
        )
    )


if __name__ == "__main__":
    main()
