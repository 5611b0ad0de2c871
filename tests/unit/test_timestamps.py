"""Wire timestamps: RFC 3339 UTC with milliseconds, the same text for the same instant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.sessions.model import iso_ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1000, "1970-01-01T00:00:01.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_795_620_848_342, "2026-11-25T15:34:08.342Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
    ],
)
def test_iso_ms(ms: int, text: str) -> None:
    assert iso_ms(ms) == text
    assert iso_ms(ms) == text  # the second call comes from the per-second cache


def test_iso_ms_agrees_with_datetime_across_many_instants() -> None:
    for ms in range(1_795_620_000_000, 1_795_620_000_000 + 5_000_000, 4_999):
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert iso_ms(ms) == f"{expected}.{ms % 1000:03d}Z"
