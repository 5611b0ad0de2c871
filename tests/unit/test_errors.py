"""The error tree: a wire code is a property of each class, not of its ancestry, so
`except ValidationFailed` catches rejected input and never a 401, 404 or 413."""

from __future__ import annotations

import pytest

from shared.errors import (
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    SemanticValidationFailed,
    ServiceError,
    ValidationFailed,
)


@pytest.mark.parametrize(
    ("error", "status"), [(NotAuthenticated, 401), (NotFound, 404), (PayloadTooLarge, 413)]
)
def test_transport_failures_escape_a_validation_handler(
    error: type[ServiceError], status: int
) -> None:
    try:
        raise error("x")
    except ValidationFailed:
        caught_by = "except ValidationFailed"
    except ServiceError:
        caught_by = "except ServiceError"
    assert caught_by == "except ServiceError"
    assert error.code == "validation_error"  # the seed's closed list of codes (DESIGN.md)
    assert error.status == status
    assert error.recoverable is False


def test_rejected_input_is_still_a_validation_failure() -> None:
    with pytest.raises(ValidationFailed):
        raise SemanticValidationFailed("items: the totals disagree")
    assert NotFound.replayed is True  # a 404 is an endpoint's answer: replayed to a retry
