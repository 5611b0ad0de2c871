"""Caller-supplied values cannot make two tenants' keys meet."""

from shared.ids import partition_of_account
from shared.redis.keys import Keys, seg


def test_separators_in_ids_cannot_make_keys_collide() -> None:
    keys = Keys("hs")
    p = 3
    # Without escaping both would be "...:a:x:cu:y:cu:z".
    assert keys.customer_index(p, "x", "y:cu:z") != keys.customer_index(p, "x:cu:y", "z")
    assert keys.wallet(p, "acct", "c") != keys.customer_index(p, "acct", "c:wallet")
    assert keys.idempotency(p, "a:b", "c") != keys.idempotency(p, "a", "b:c")


def test_escaping_keeps_plain_values_readable_and_braces_out_of_the_tag() -> None:
    assert seg("acct_123") == "acct_123"
    assert seg("a:{p01}%") == "a%3A%7Bp01%7D%25"
    key = Keys("hs").status_index(partition_of_account("x{p99}"), "x{p99}", "open")
    assert key.count("{") == 1  # only the partition's own hash tag
