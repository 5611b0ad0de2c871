"""The only place a Redis key is spelled.

Every key of one session (its record, its account's indexes, its partition's stream and
expiry schedule) carries the same hash tag `{pNN}`, so one Lua step over them is valid on
Redis Cluster. The partition comes from the account (`shared.ids.partition_of_account`) and
is encoded in the session id, so browser calls that know only the id find the same slot.
"""

from __future__ import annotations

from urllib.parse import quote

from arq.constants import job_key_prefix, result_key_prefix

from shared.ids import PARTITIONS, partition_of_account


def seg(value: str) -> str:
    """A caller-supplied value as one key segment: `%`, `:` and braces are escaped, so no
    account, customer or idempotency key can reach into another's keys or hash tag."""
    # Four substring tests in C: every key of a request escapes its segments (a generator
    # over the four characters costs more: docs/performance.md).
    if "%" not in value and ":" not in value and "{" not in value and "}" not in value:
        return value
    return value.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def ident(value: str) -> str:
    """An id (session, endpoint, delivery, quote) as one key segment: every id the service
    makes passes unchanged; anything else is percent-encoded (UTF-8), so no id can carry
    the separator `:`, a hash-tag brace or a non-ASCII character into a key, whatever
    checked it before (paths are checked against the ids' patterns: shared.ids)."""
    # Two C calls (an ASCII identifier is [A-Za-z_][A-Za-z0-9_]*, which every id is); the
    # encoding is the same function for all values (quote leaves those unchanged), so two
    # different ids never share a segment.
    if value.isascii() and value.isidentifier():
        return value
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


class Keys:
    """Key builder bound to a prefix (tests use their own prefix so they never collide)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # Built once: every key of a request starts with one of these (an f-string per key
        # would format the same text again on every command; docs/performance.md).
        self._tags = [f"{prefix}:{{p{partition:02d}}}" for partition in range(PARTITIONS)]

    def tag(self, partition: int) -> str:
        return self._tags[partition]

    def session(self, partition: int, session_id: str) -> str:
        """STRING `<seq>;<len sh>;<len fs>;<sh><fs><doc>`: event sequence (= version), the
        secret's keyed hash, the encrypted fraud signals, the compressed msgpack record
        (`shared.sessions.store`)."""
        return f"{self.tag(partition)}:s:{ident(session_id)}"

    def status_index(self, partition: int, account_uid: str, status: str) -> str:
        """ZSET (all scores 0, ordered by member) of the account's sessions in `status`:
        `<inverted created ms, 8 base62 digits><session id>`, newest first. The three status
        indexes together are the account's list (no account-wide index is kept)."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:st:{status}"

    def customer_index(self, partition: int, account_uid: str, customer_id: str) -> str:
        """ZSET like `status_index`, holding one customer's sessions (every status)."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:cu:{seg(customer_id)}"

    def wallet(self, partition: int, account_uid: str, customer_id: str) -> str:
        """HASH method id -> msgpack SavedMethod: a customer's saved payment methods."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:cu:{seg(customer_id)}:wallet"

    def duplicate_guard(self, partition: int, account_uid: str, digest: str) -> str:
        """STRING with a TTL (the duplicate window): the session that paid this
        (customer, fingerprint, amount) recently."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:dup:{digest}"

    def charge_hold(self, partition: int, session_id: str) -> str:
        """STRING (msgpack): the charge attempt holding the session while it is in flight;
        no TTL: it is dropped by the charge's outcome, or by reconciliation."""
        return f"{self.tag(partition)}:hold:{ident(session_id)}"

    def fee_quote(self, partition: int, session_id: str, quote_id: str) -> str:
        """STRING (msgpack `FeeQuote`) with a TTL a little past the quote's validity: a fee
        promised to this session. The service's clock decides validity; the TTL cleans up."""
        return f"{self.tag(partition)}:fq:{ident(session_id)}:{ident(quote_id)}"

    def dev_sms_outbox(self, partition: int, session_id: str) -> str:
        """STRING with a short TTL, dev and test only: the last SMS text sent for the session
        (its challenge code), for tests and the developer to read. Never in production."""
        return f"{self.tag(partition)}:dev:sms:{ident(session_id)}"

    def account_events(self, partition: int, account_uid: str) -> str:
        """STREAM: one entry per event of the account, with the partition stream's entry id
        (field `t`: the event type's code, `shared.events.stored.TYPE_CODES`); the event
        itself is read from `events`."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:events"

    def account_event_ids(self, partition: int, account_uid: str) -> str:
        """HASH field = event id without its `evt_` prefix, value = its stream entry id: how
        `GET /v1/events?starting_after=evt_…` finds where a page ends. Written with the event
        (write_session.lua), trimmed with the account's index (shared/events/trim.py)."""
        return f"{self.tag(partition)}:a:{seg(account_uid)}:evids"

    def idempotency(self, partition: int, account_uid: str, key: str) -> str:
        """STRING (msgpack): the first response to an Idempotency-Key, or its in-flight lock."""
        return f"{self.tag(partition)}:idem:{seg(account_uid)}:{seg(key)}"

    def expiry_schedule(self, partition: int) -> str:
        """ZSET score=expires_at ms, member=session id: open sessions, for the safety sweep."""
        return f"{self.tag(partition)}:expiry"

    def events(self, partition: int) -> str:
        """STREAM of lifecycle events of this partition's sessions (field `e`: the JSON
        envelope's stored form, `shared.events.stored`)."""
        return f"{self.tag(partition)}:events"

    def all_event_streams(self) -> list[str]:
        return [self.events(p) for p in range(PARTITIONS)]

    def all_expiry_schedules(self) -> list[str]:
        return [self.expiry_schedule(p) for p in range(PARTITIONS)]

    def lease(self, partition: int, role: str) -> str:
        """STRING with a TTL: the member (worker) that holds this partition for `role`."""
        return f"{self.tag(partition)}:lease:{role}"

    def lease_members(self, role: str) -> str:
        """ZSET member -> last heartbeat ms: the live members sharing `role`'s partitions."""
        return f"{self.prefix}:members:{role}"

    def worker_health(self, host: str, queue: str) -> str:
        """STRING with a short TTL: a worker process on `host` serves `queue`."""
        return f"{self.prefix}:health:{host}:{queue}"

    def arq_queue(self, queue: str) -> str:
        """arq's queue name (a ZSET arq owns); one per kind of work so ops scale each."""
        return f"{self.prefix}:queue:{queue}"

    @staticmethod
    def arq_job(job_id: str) -> str:
        """STRING arq owns: a queued job's payload (arq's own, unprefixed key space; our job
        ids start with the prefix, `shared.redis.jobs.webhook_job_id`)."""
        return job_key_prefix + job_id

    @staticmethod
    def arq_result(job_id: str) -> str:
        """STRING arq owns: a finished job's result (kept `keep_result` seconds)."""
        return result_key_prefix + job_id

    def arq_health_check(self, queue: str) -> str:
        """STRING arq's worker of `queue` refreshes with its counters (arq owns it)."""
        return f"{self.arq_queue(queue)}:health-check"

    def simulator_charge(self, idempotency_key: str) -> str:
        """STRING (msgpack `ChargeOutcome`) with a TTL: the payment simulator's first outcome
        for an idempotency key. No partition tag: a dev/test seam on the one server."""
        return f"{self.prefix}:sim:charge:{idempotency_key}"

    def simulator_charges(self) -> str:
        """LIST of the charge ids the payment simulator made (tests count double charges)."""
        return f"{self.prefix}:sim:charges"

    def account_settings(self, account_uid: str) -> str:
        """STRING (msgpack `AccountSettings`): the account's settings; absent = all defaults."""
        return f"{self.tag(partition_of_account(account_uid))}:acct:{seg(account_uid)}:settings"

    def risk_velocity(self, account_uid: str, dimension: str, digest: str) -> str:
        """ZSET score=created ms, member=session id: the account's scored sessions sharing one
        IP, email or phone within the velocity window (trimmed, with a TTL). `digest` is a keyed
        hash of the value: a key name never holds PII."""
        tag = self.tag(partition_of_account(account_uid))
        return f"{tag}:rv:{seg(account_uid)}:{dimension}:{digest}"

    def event_dead_letters(self, partition: int, group: str) -> str:
        """STREAM: entries consumer group `group` gave up on (fields `id` = the partition
        stream's entry id, `e` = the envelope's stored form, `deliveries`, `reason`)."""
        return f"{self.tag(partition)}:events:dead:{seg(group)}"

    def event_trim_turn(self) -> str:
        """STRING with a TTL of one trim interval: the worker whose turn it is to trim."""
        return f"{self.prefix}:events:trim-turn"

    # --- webhooks (docs/webhooks.md): an account's endpoints and deliveries share its tag,
    # and with it the slot of its partition's event stream.

    def webhook_endpoint(self, account_uid: str, endpoint_id: str) -> str:
        """HASH: doc (msgpack endpoint), v (version for compare-and-set), sk (AES-GCM signing
        secrets), after (the partition stream's last entry id when it was created)."""
        tag = self.tag(partition_of_account(account_uid))
        return f"{tag}:a:{seg(account_uid)}:we:{ident(endpoint_id)}"

    def webhook_endpoints(self, account_uid: str) -> str:
        """ZSET score=created ms, member=endpoint id: the account's webhook endpoints."""
        return f"{self.tag(partition_of_account(account_uid))}:a:{seg(account_uid)}:we"

    def webhook_delivery(self, account_uid: str, delivery_id: str) -> str:
        """HASH with a TTL: doc (msgpack delivery), v (version for compare-and-set), body (the
        exact event JSON every attempt sends)."""
        tag = self.tag(partition_of_account(account_uid))
        return f"{tag}:a:{seg(account_uid)}:wd:{ident(delivery_id)}"

    def webhook_endpoint_deliveries(self, account_uid: str, endpoint_id: str) -> str:
        """ZSET (scores 0) of `<inverted created ms>:<delivery id>`: newest first by lex order,
        capped and expiring with the deliveries it lists."""
        tag = self.tag(partition_of_account(account_uid))
        return f"{tag}:a:{seg(account_uid)}:we:{ident(endpoint_id)}:wd"

    def webhook_due(self, partition: int) -> str:
        """ZSET score=next attempt ms, member=`<delivery id>:<account>`: pending deliveries of
        the partition, for the safety sweep that re-queues a lost attempt."""
        return f"{self.tag(partition)}:wh:due"

    def all_webhook_due(self) -> list[str]:
        return [self.webhook_due(p) for p in range(PARTITIONS)]

    # --- rate limits (docs/browser-security.md): one GCRA key per limited thing, each read
    # and written by a single-key or same-slot Lua step.

    def rate_limit_session(self, partition: int, session_id: str, bucket: str) -> str:
        """STRING with a TTL: GCRA theoretical arrival time (µs) of a session's browser calls
        in `bucket` (`read`, `confirm`, `challenge`)."""
        return f"{self.tag(partition)}:rl:{bucket}:s:{ident(session_id)}"

    def rate_limit_client(self, bucket: str, digest: str) -> str:
        """STRING with a TTL: GCRA arrival time (µs) of one client address's browser calls in
        `bucket`. No hash tag: a single-key step, so clients spread over the cluster's slots.
        `digest` is a keyed hash of the address: a key name never holds an IP."""
        return f"{self.prefix}:rl:{bucket}:ip:{digest}"

    def card_testing(self, account_uid: str, dimension: str, digest: str) -> str:
        """STRING with a TTL: GCRA arrival time (µs) of an account's failed charges per card
        fingerprint (`fp`) or per keyed hash of the client address (`ip`); both dimensions
        share the account's tag so one step checks them together."""
        tag = self.tag(partition_of_account(account_uid))
        return f"{tag}:ct:{seg(account_uid)}:{dimension}:{digest}"
