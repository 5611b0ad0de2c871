"""Caller-supplied values cannot make two tenants' keys meet."""

from collections.abc import Callable

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


# Ids as a caller could send them: the key separator, hash-tag braces, the escape character,
# non-ASCII (letters, digits other scripts call digits, a lone surrogate), empty.
HOSTILE_IDS = ["we_a:wd", "we_a:", "{p01}", "we_}", "we_%3A", "we_é", "we_٣", "we_\udcff", ""]


def _tail(key: str, prefix: str) -> str:
    assert key.startswith(prefix)
    return key[len(prefix) :]


def test_no_id_can_reach_another_key_of_its_endpoint() -> None:
    keys = Keys("hs")
    # Without escaping, `we_a:wd` was the endpoint's delivery index (a DELETE wiped it).
    assert keys.webhook_endpoint("acct", "we_a:wd") != keys.webhook_endpoint_deliveries(
        "acct", "we_a"
    )
    assert keys.webhook_delivery("acct", "whd_a:x") != keys.webhook_delivery("acct", "whd_a%3Ax")


def test_id_segments_hold_no_separator_brace_or_non_ascii_and_never_meet() -> None:
    keys = Keys("hs")
    builders: dict[str, Callable[[str], str]] = {
        "session": lambda v: _tail(keys.session(3, v), keys.tag(3) + ":s:"),
        "hold": lambda v: _tail(keys.charge_hold(3, v), keys.tag(3) + ":hold:"),
        "sms": lambda v: _tail(keys.dev_sms_outbox(3, v), keys.tag(3) + ":dev:sms:"),
        "rate": lambda v: _tail(keys.rate_limit_session(3, v, "read"), keys.tag(3) + ":rl:read:s:"),
        "endpoint": lambda v: _tail(
            keys.webhook_endpoint("acct", v), keys.webhook_endpoints("acct") + ":"
        ),
        "delivery": lambda v: _tail(
            keys.webhook_delivery("acct", v),
            keys.webhook_endpoints("acct").removesuffix(":we") + ":wd:",
        ),
    }
    for name, build in builders.items():
        segments = [build(v) for v in HOSTILE_IDS]
        for value, segment in zip(HOSTILE_IDS, segments, strict=True):
            assert segment.isascii(), (name, value)
            assert not set(segment) & set(":{}"), (name, value)
        assert len(set(segments)) == len(segments), name  # two ids, two keys
    # A fee quote's id too, beside its session's.
    assert keys.fee_quote(3, "cs_a", "fq_b:c").count(":") == keys.fee_quote(3, "cs_a", "b").count(
        ":"
    )


def test_ids_the_service_makes_are_unchanged() -> None:
    keys = Keys("hs")
    assert keys.session(3, "cs_3AbcdefGHIJKLmno").endswith(":s:cs_3AbcdefGHIJKLmno")
    endpoint = "we_" + "aZ09" * 6
    assert keys.webhook_endpoint("acct", endpoint).endswith(":we:" + endpoint)
    delivery = "whd_" + "aZ09" * 6
    assert keys.webhook_delivery("acct", delivery).endswith(":wd:" + delivery)
