"""The one pagination convention of every list, said once here and in the OpenAPI document.

Every list answers newest first as `{object: "list", data, has_more}`; the next (older) page
is asked for with `starting_after=<the id of the last object of this page>` (a session id,
an event id, an endpoint id, a delivery id) and the same `limit` and filters. An id that is
not one of the account's own objects answers 400 `validation_error`, exactly as an unknown
one: another account's id is never a position in this account's list.
"""

from __future__ import annotations

PAGINATION_CONVENTION = (
    "Pagination, the same on every list: lists answer newest first as "
    '`{object: "list", data, has_more}`. For the next (older) page pass the `id` of the '
    "last object of this page as `starting_after`, with the same `limit` and filters. An id "
    "that is not one of the account's own objects (unknown, another account's, or no longer "
    "kept) answers 400 `validation_error`. `GET /v1/events` also gives a `next_cursor` "
    "(a stream position), accepted as `starting_after` too."
)


def starting_after_of(kind: str) -> str:
    """The `starting_after` parameter's description on a list of `kind` (e.g. "session")."""
    return (
        f"The `id` of the last {kind} of the previous page; see Pagination in the API's "
        "description."
    )


STARTING_AFTER_EVENTS = (
    "The `id` of the last event of the previous page (`evt_…`), as on every list, or its "
    "`next_cursor`; see Pagination in the API's description."
)
