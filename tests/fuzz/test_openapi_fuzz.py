"""Contract fuzzing (Schemathesis): every operation of the project's own OpenAPI document, run
against a real API process with valid credentials for both surfaces.

Checks: no 5xx (a confirm's documented 502/503 processor outcomes aside), every status
documented, bodies and content types as documented, required headers and auth enforced, data
the document forbids refused, and every error body the envelope `{code, message, recoverable,
request_id}` with a code of the closed list at its status (DESIGN.md).

`HS_FUZZ_EXAMPLES` (default 20) sets the generated examples per operation and generation mode
(positive and negative), on top of the deterministic coverage phase. Without it the run is
derandomized (`make test`: the same cases every time); with it (the soak) the seed is random
unless `HS_FUZZ_SEED` gives one. The seed is printed in the summary line to replay a failure.
`HS_FUZZ_KEEP_GOING=1` records every failure instead of stopping an operation at its first,
and fails at the end with the list (for a soak report or a round of fixes).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import time
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from redis import Redis as SyncRedis
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData
from schemathesis.schemas import APIOperation

from services.api.app import create_app
from services.api.auth.guards import ACCOUNT_HEADER
from shared.config import Settings
from shared.devkeys import DevKeys, mint_admin_token
from shared.errors import ErrorCode
from tests.processes import api_process
from tests.support import ACCOUNT, seed_body

pytestmark = pytest.mark.fuzz
Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]

EXAMPLES = int(os.environ.get("HS_FUZZ_EXAMPLES") or 20)
# make test: derandomized. The soak (HS_FUZZ_EXAMPLES set): random, or HS_FUZZ_SEED's.
_SEED_ENV = os.environ.get("HS_FUZZ_SEED")
DETERMINISTIC = _SEED_ENV is None and "HS_FUZZ_EXAMPLES" not in os.environ
SEED = int(_SEED_ENV) if _SEED_ENV else (0 if DETERMINISTIC else secrets.randbits(32))
KEEP_GOING = os.environ.get("HS_FUZZ_KEEP_GOING") == "1"

# The document exactly as `hosted-sessions openapi` prints it (no Redis needed to build it).
DOCUMENT: dict[str, Any] = msgspec.json.decode(
    msgspec.json.encode(create_app(Settings(env="test")).openapi_schema.to_schema())
)

_NOT_5XX = ["2xx", "3xx", "4xx"]
_CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "mode": "all",
        "max-examples": EXAMPLES,
        "deterministic": DETERMINISTIC,
        # No .hypothesis directory: a replay comes from the seed, not a local database.
        "database": "none",
        # The credentials are ours (valid, per surface); the ignored_auth check probes each
        # operation without them and with a wrong one.
        "with-security-parameters": False,
        # Unknown query parameters and headers are ignored, as HTTP APIs do: a case that only
        # adds some is not invalid data to refuse.
        "allow-extra-parameters": False,
    },
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        # Schema-valid bodies are refused for rules a JSON schema cannot state (item totals,
        # expiry in the past, a session's state), so acceptance of valid data is not checked.
        "positive_data_acceptance": {"enabled": False},
    },
    "operations": [
        {
            # A confirm's processor faults (simulator test cards) are documented outcomes.
            "include-path-regex": "/confirm$",
            "checks": {"not_a_server_error": {"expected-statuses": [*_NOT_5XX, 502, 503]}},
        },
        {
            # The SMS sender failing is the challenge's documented 502.
            "include-path-regex": "/challenge$",
            "checks": {"not_a_server_error": {"expected-statuses": [*_NOT_5XX, 502]}},
        },
    ],
}
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(_CONFIG))

# DESIGN.md's table: which statuses each code of the closed list may answer with.
_STATUSES_OF_CODE: dict[str, set[int]] = {
    "validation_error": {400, 401, 404, 405, 409, 413, 415, 422},
    "card_declined": {402},
    "expired_card": {402},
    "incorrect_cvc": {402},
    "insufficient_funds": {402},
    "insufficient_scope": {403},
    "origin_not_allowed": {403},
    "challenge_required": {403},
    "challenge_failed": {403},
    "already_confirmed": {409},
    "duplicate_payment": {409},
    "session_expired": {410},
    "rate_limited": {429},
    "processing_error": {500, 502},
    "network_error": {503},
}
assert set(_STATUSES_OF_CODE) == set(typing.get_args(ErrorCode))


def error_envelope(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """Every error is `{code, message, recoverable, request_id}`, its code from the closed
    list and allowed at this status, its request id the one in X-Request-Id."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {response.text[:200]}"
    assert set(body) == {"code", "message", "recoverable", "request_id"}, sorted(body)
    code = body["code"]
    assert code in _STATUSES_OF_CODE, f"code {code!r} is not in the closed list"
    assert response.status_code in _STATUSES_OF_CODE[code], (
        f"code {code!r} answered with status {response.status_code}"
    )
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["recoverable"], bool)
    request_ids = response.headers.get("x-request-id") or []
    assert body["request_id"]
    assert [body["request_id"]] == request_ids, (body, request_ids)
    return True


class Api:
    """The running API and what the cases need from it: fresh sessions, endpoints, cards."""

    def __init__(self, base_url: str, admin: dict[str, str]) -> None:
        self.base_url = base_url
        self.admin = admin
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def session(self, **overrides: Any) -> tuple[str, str]:
        """A new open session (id, client secret) whose signals score normal risk."""
        body = seed_body(**overrides)
        body["fraud_signals"] = {
            **body["fraud_signals"],
            # A form loaded a minute ago, a shopper of its own: no timing or velocity rule.
            "request_timestamp": int(time.time() * 1000) - 60_000,
            "ip_address": f"198.51.100.{secrets.randbelow(250) + 1}",
            "phone": f"+1555555{secrets.randbelow(10_000):04d}",
        }
        r = self.http.post("/v1/hosted-sessions", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        created = r.json()
        return created["session_id"], created["client_secret"]

    def saved_card(self, session_id: str, secret: str) -> str:
        r = self.http.post(
            f"/v1/hosted-sessions/{session_id}/payment-methods",
            json={
                "type": "card",
                "number": "4242424242424242",
                "exp_month": 12,
                "exp_year": 2040,
                "cvc": "123",
            },
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert r.status_code in (200, 201), r.text
        method_id: str = r.json()["id"]
        return method_id

    def endpoint(self) -> str:
        r = self.http.post(
            "/v1/webhook-endpoints",
            json={
                "url": "https://hooks.example.com/fuzz",
                "enabled_events": ["hosted_session.completed"],
            },
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        endpoint_id: str = r.json()["id"]
        return endpoint_id

    def delete_endpoint(self, endpoint_id: str) -> None:
        # The account may hold 16 endpoints: what a case created is removed after it.
        self.http.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=self.admin)


class Tally:
    """Cases per surface, failures, and (with HS_FUZZ_KEEP_GOING) every distinct failure."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.failed_cases: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failures: dict[tuple[str, str], str] = {}


TALLY = Tally()


@pytest.fixture(scope="module")
def api(
    redis_url: str, dev_keys: tuple[DevKeys, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One API process for every operation, under its own key prefix (deleted after)."""
    prefix = "tfuzz" + secrets.token_hex(4)
    settings = Settings(
        env="test",
        redis_url=redis_url,
        key_prefix=prefix,
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_file=str(dev_keys[1]),
        jwt_issuer="hosted-sessions-test",
        log_json=True,
        # Every case comes from 127.0.0.1: per-address limits and the card-testing guard
        # would turn most later cases into 429s that never reach the code under test.
        rate_limit_reads_per_ip=0,
        rate_limit_confirms_per_ip=0,
        rate_limit_challenges_per_ip=0,
        card_testing_failures_per_card=0,
        card_testing_failures_per_ip=0,
    )
    token = mint_admin_token(
        dev_keys[0],
        issuer=settings.jwt_issuer,
        account_uids=[ACCOUNT],
        groups=[settings.jwt_admin_group],
    )
    admin = {"Authorization": f"Bearer {token}", "X-Payment-Account-Uid": ACCOUNT}
    log = tmp_path_factory.mktemp("fuzz") / "api.log"
    try:
        with api_process(settings, log) as base_url:
            api = Api(base_url, admin)
            try:
                yield api
            finally:
                api.http.close()
    finally:
        client = SyncRedis.from_url(redis_url)
        try:
            for pattern in (f"{prefix}:*", f"arq:*{prefix}:*"):
                for key in client.scan_iter(match=pattern, count=1000):
                    client.delete(key)
        finally:
            client.close()


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """One line at the end (the soak reads its figures), shown even with output captured."""
    yield
    line = (
        f"openapi fuzz: merchant {TALLY.cases['merchant']} cases, browser "
        f"{TALLY.cases['browser']} cases, failed cases {sum(TALLY.failed_cases.values())}, "
        f"distinct failures {len(TALLY.failures)}, examples/operation/mode {EXAMPLES}, "
        f"seed {SEED}{' (derandomized)' if DETERMINISTIC else ''}, statuses "
        + ",".join(f"{s}:{n}" for s, n in sorted(TALLY.statuses.items()))
    )
    # Past pytest's output capture, which holds a fixture's teardown output otherwise.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)
        else:
            print(line)
    if KEEP_GOING and TALLY.failures:
        pytest.fail(
            "\n\n".join(f"{op}: {kind}\n{text}" for (op, kind), text in TALLY.failures.items()),
            pytrace=False,
        )


def _surface(case: Case) -> str:
    tags = case.operation.tags or []
    return "browser" if any("(browser)" in tag for tag in tags) else "merchant"


def _probed_header(case: Case) -> str | None:
    """The header a coverage case is about (missing, or of a wrong type), lower case: the
    credential we add must not undo what the case tests."""
    data = case.meta.phase.data if case.meta is not None else None
    if isinstance(data, CoveragePhaseData) and data.parameter_location == ParameterLocation.HEADER:
        return (data.parameter or "").lower() or None
    return None


@schema.parametrize()
def test_openapi_contract(case: Case, api: Api) -> None:
    """One generated case: real ids in the path, a valid credential, then every check."""
    surface = _surface(case)
    path = case.operation.path
    meta = case.meta
    # A case generated invalid in its path or headers keeps them: it tests how they are refused.
    real_ids = meta is None or not meta.is_negative_at(ParameterLocation.PATH)
    real_headers = meta is None or not meta.is_negative_at(ParameterLocation.HEADER)
    params = dict(case.path_parameters or {}) if real_ids else {}
    probed = _probed_header(case)
    # The credential goes as the caller's own headers (not the case's), so the checks know it
    # is real and probe the API without it (ignored_auth).
    credential: dict[str, str] = {}
    cleanup: list[str] = []
    if surface == "browser":
        wallet = "/payment-methods" in path
        sid, secret = (
            api.session(scope="wallet", customer_id="cust_fuzz") if wallet else api.session()
        )
        credential["Authorization"] = f"Bearer {secret}"
        if real_ids:
            params["session_id"] = sid
        if "method_id" in params:
            params["method_id"] = api.saved_card(sid, secret)
    else:
        credential["Authorization"] = api.admin["Authorization"]
        if real_headers and probed != ACCOUNT_HEADER:
            case.headers[ACCOUNT_HEADER] = ACCOUNT
        if "session_id" in params:
            params["session_id"] = api.session()[0]
        if "endpoint_id" in params:
            params["endpoint_id"] = api.endpoint()
            cleanup.append(params["endpoint_id"])
    if probed == "authorization":
        credential = {}
    if params:
        case.path_parameters = params
    TALLY.cases[surface] += 1
    try:
        response = case.call(base_url=api.base_url, headers=credential)
        TALLY.statuses[response.status_code] += 1
        if (
            case.method == "POST"
            and path == "/v1/webhook-endpoints"
            and response.status_code == 201
        ):
            cleanup.append(response.json()["id"])
        try:
            case.validate_response(
                response,
                headers=credential,
                additional_checks=[error_envelope],
                transport_kwargs={"base_url": api.base_url, "headers": credential},
            )
        except FailureGroup as exc:
            TALLY.failed_cases[surface] += 1
            for failure in exc.exceptions:
                key = (case.operation.label, f"{type(failure).__name__}: {failure.title}")
                TALLY.failures.setdefault(key, str(exc)[:3000])
            if not KEEP_GOING:
                raise
    finally:
        for endpoint_id in cleanup:
            api.delete_endpoint(endpoint_id)
