"""How an event is stored in the partition streams, and the one way to read it back.

Field `e` of a stream entry holds the event's JSON envelope (exactly the bytes
`EVENT_ENCODER` wrote), compressed with `shared.redis.compact.PresetCodec` where that pays:
a `created` event carries the whole session view and is kept for the retention period, so it
was most of a session's memory. Every reader (`EventConsumer`, `StreamTail`, `AccountEvents`,
the trim loop, the CLI, webhooks through `EventConsumer`) goes through `stored_event_json` /
`decode_stored_event`, so what consumers see is the JSON as written, byte for byte.

Consumers that only route events (the fraud scorer, the webhook dispatcher) read the envelope's
head (`EventHead`: type, ids, sequence) and keep the JSON as it is: msgspec skips the `data`
object without building it, and a webhook's body is that JSON itself.

Field `t` of an account's index entry is the event type's short code (`TYPE_CODES`, from each
class's `code` in model.py), which a listpack keeps as a one-byte integer instead of the 22-30
byte name.

A new event type needs nothing here: its events compress against the envelope fragments the
frozen dictionary already holds (a dictionary tuned to it would be a new codec and marker).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

import msgspec

from shared.events.model import EVENT_CLASSES, EVENT_DECODER, Event
from shared.redis.compact import PresetCodec

# Frozen: stored events are read with it for as long as they are kept (docs in compact.py).
# Rarer shapes first, the `created` envelope (the biggest and most common) last, nearest the
# data it primes.
_EVENT_DICTIONARY_V1 = (
    b'"previous_attributes":{"amount":1000,"line_items":[],"description":null,'
    b'"customer_email":null,"allowed_methods":["card","ach","apple_pay","paypal"],'
    b'"branding":null,"metadata":{},"expires_at":"'
    b'"error":{"code":"card_declined","message":"The card was declined"}}}'
    b'"expires_at":"","sends":1,"resends_left":2,"attempts_left":3}}}'
    b'"reason":"wrong_code","attempts_left":0,"locked":false}}}'
    b'"reason":"expired","reason":"merchant"}}}"reason":"time"}}}'
    b'"payment":{"method":"card","brand":"visa","last4":"4242","exp_month":12,"exp_year":2030,'
    b'"charge_id":"ch_","amount":1000,"fee":0,"saved_method_id":null}'
    b'"status":"complete","payment_status":"paid","status":"expired"'
    b'{"type":"hosted_session.updated"{"type":"hosted_session.expired"'
    b'{"type":"hosted_session.completed"{"type":"hosted_session.payment_failed"'
    b'{"type":"hosted_session.challenge_required"{"type":"hosted_session.challenge_succeeded"'
    b'{"type":"hosted_session.challenge_failed"'
    b'"reasons":["velocity_ip","velocity_email","velocity_phone","disposable_email",'
    b'"missing_user_agent","not_authorized","timing_future","timing_too_fast","timing_missing",'
    b'"no_signals","email_mismatch","timing_stale","admin_actor"]'
    b'{"type":"hosted_session.risk_scored","id":"evt_","created_at":"2026-01-01T00:00:00.000Z",'
    b'"account_uid":"acct_","session_id":"cs_","sequence":2,"data":{"risk":{"status":"scored",'
    b'"score":10,"level":"normal","reasons":[]},"status":"open"}}'
    b'"level":"elevated","level":"highest"'
    b'{"type":"hosted_session.created","id":"evt_","created_at":"2026-01-01T00:00:00.000Z",'
    b'"account_uid":"acct_","session_id":"cs_","sequence":1,"data":{"object":'
    b'{"object":"hosted_session","id":"cs_","status":"open","payment_status":"unpaid",'
    b'"amount":1000,"currency":"USD","description":null,"line_items":[{"description":"",'
    b'"amount":1000,"quantity":1,"metadata":{}}],"customer_id":null,"customer_email":'
    b'"@gmail.com","success_url":"https://www.","cancel_url":"https://www.","layout":"embedded",'
    b'"allowed_methods":["card"],"setup_future_usage":"off","scope":"payment","branding":'
    b'{"logo_url":"https://","accent_color":"#","merchant_display_name":""},'
    b'"required_avs_fields":["cardholder","zip"],"metadata":{},"risk":{"status":"pending",'
    b'"score":null,"level":null,"reasons":[]},"hosted_url":"https://checkout.govifi.com/cs_",'
    b'"embed_url":"https://checkout.govifi.com/embed/cs_","created_at":'
    b'"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z","expires_at":'
    b'"2026-01-01T00:30:00.000Z","expired_at":null,"expired_reason":null,"completed_at":null,'
    b'"payment":null}}}'
)

EVENT_CODEC = PresetCodec(0x11, _EVENT_DICTIONARY_V1, deflate_marker=0x01)

# Each type's `code` (declared with its class in shared/events/model.py) by name.
TYPE_CODES: Mapping[str, str] = {name: cls.code for name, cls in EVENT_CLASSES.items()}


def type_code(event_type: str) -> str:
    """The code an account's index stores for this type (the name itself if it has none)."""
    return TYPE_CODES.get(event_type, event_type)


def pack_event(event_json: bytes) -> bytes:
    """The stored form of an event's JSON envelope (field `e`)."""
    return EVENT_CODEC.pack(event_json)


def stored_event_json(stored: bytes) -> bytes:
    """The JSON envelope of a stored event (field `e`), byte for byte as it was encoded;
    msgspec.DecodeError when it is corrupt."""
    return EVENT_CODEC.unpack(stored)


def decode_stored_event(stored: bytes) -> Event:
    """The event of a stored entry's field `e` (msgspec.DecodeError / ValidationError when
    it cannot be read)."""
    event: Event = EVENT_DECODER.decode(EVENT_CODEC.unpack(stored))
    return event


class EventHead(msgspec.Struct, frozen=True, kw_only=True):
    """An event's envelope without its data: what routing it needs."""

    type: str
    id: str
    account_uid: str
    session_id: str
    sequence: int

    @property
    def kind(self) -> builtins.type[Event] | None:  # `type` is the field here
        """The event's class: what a consumer dispatches on (None for a type this code does
        not know, which a newer writer may have added)."""
        return EVENT_CLASSES.get(self.type)


_HEAD_DECODER = msgspec.json.Decoder(EventHead)


def read_stored_event(stored: bytes) -> tuple[EventHead, bytes]:
    """The head and the JSON envelope of a stored entry's field `e` (msgspec.DecodeError /
    ValidationError when it cannot be read). The JSON is checked whole; `data` is not built."""
    raw = EVENT_CODEC.unpack(stored)
    return _HEAD_DECODER.decode(raw), raw


EVENT_ID_PREFIX = "evt_"
_HEAD = b'{"type":"'
_ID_AFTER_TYPE = b'","id":"'


def event_id_of(event_json: bytes) -> str:
    """The id of an envelope as EVENT_ENCODER writes it, read from its head without parsing
    the rest: `{"type":"<name>","id":"<id>",…` (a tagged union writes its tag first, then
    the fields in order). Any other shape is decoded properly instead (msgspec errors when
    it is no envelope)."""
    if event_json.startswith(_HEAD):
        type_end = event_json.find(b'"', len(_HEAD))
        if type_end > 0 and event_json.startswith(_ID_AFTER_TYPE, type_end):
            start = type_end + len(_ID_AFTER_TYPE)
            end = event_json.find(b'"', start)
            if end > start:
                return event_json[start:end].decode()
    head: EventHead = _HEAD_DECODER.decode(event_json)
    return head.id
