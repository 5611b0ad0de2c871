"""The checkout pages in a real headless Chromium against real API and worker processes:
pay, decline and retry, an SMS challenge, expiry on an open page, and the embedded page
reporting completion to a parent page on another origin. Screenshots of the main states go to
the test's tmp dir (printed on failure). Skips, saying why, where no Chromium is installed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from shared.challenge.store import DevSmsOutbox
from shared.config import Settings
from shared.redis.keys import Keys
from tests.processes import child_env, free_port, start_worker, stop
from tests.support import seed_body

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
URL = "/v1/hosted-sessions"
# A processor adapter that is not the simulator (tests/processors.py): no test mode.
ADAPTER = "tests.processors:sandbox_adapter"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    # In CI a missing browser is a failure, not a skip: a skipped page test hides a broken page.
    if os.environ.get("CI"):
        pytest.fail("no Chromium in CI: scripts/ensure-browser (`make test`) must install it")
    pytest.skip("no Chromium on this machine (scripts/ensure-browser installs Debian's)")


class Merchant:
    """A stand-in merchant site on its own origin: success/cancel pages and a parent page
    embedding the checkout. Records every request it gets (path and Referer)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict[str, str]] = []
        self.embeds: dict[str, tuple[str, str]] = {}  # page name -> (embed_url, secret)
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                merchant.requests.append(
                    {"path": self.path, "referer": self.headers.get("Referer") or ""}
                )
                name = self.path.strip("/").split("?")[0]
                body = merchant.page(name).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, name: str) -> str:
        if name not in self.embeds:
            return f"<!doctype html><title>{name}</title><h1 id='page'>{name}</h1>"
        embed_url, secret = self.embeds[name]
        src = f"{embed_url}?parent_origin={self.origin}"
        checkout_origin = embed_url.split("/embed/")[0]
        # The merchant's own page: it holds the secret (from its backend) and hands it to the
        # frame once the frame says it is ready, only to the checkout's origin.
        return f"""<!doctype html><title>shop</title>
<iframe id="checkout" src="{src}" width="400" height="760" title="Checkout"></iframe>
<pre id="log"></pre>
<script>
const frame = document.getElementById("checkout");
window.addEventListener("message", (event) => {{
  if (event.origin !== {json.dumps(checkout_origin)}) return;
  document.getElementById("log").textContent += JSON.stringify(event.data) + "\\n";
  if (event.data.type === "hosted_session.ready") {{
    frame.contentWindow.postMessage(
      {{type: "hosted_session.init", client_secret: {json.dumps(secret)}}},
      {json.dumps(checkout_origin)});
  }}
}});
</script>"""

    def __enter__(self) -> Merchant:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def _api(settings: Settings, log_path: Path, env: dict[str, str], base_url: str) -> Iterator[None]:
    """The API on the port HS_PUBLIC_BASE_URL names, so hosted_url/embed_url open it."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api"],
            env=child_env(settings, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API did not become ready"
            time.sleep(0.1)
        yield
    finally:
        stop(proc)


class Stack:
    def __init__(self, base_url: str, log_path: Path, merchant: Merchant, shots: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path
        self.merchant = merchant
        self.shots = shots


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """API and worker on the payment simulator: test mode."""
    with _stack(settings, tmp_path, {}) as running:
        yield running


@pytest.fixture
def adapter_stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """API and worker on a processor adapter (HS_PROCESSOR=module:function): not test mode."""
    with _stack(settings, tmp_path, {"HS_PROCESSOR": ADAPTER}) as running:
        yield running


@contextmanager
def _stack(settings: Settings, tmp_path: Path, extra_env: dict[str, str]) -> Iterator[Stack]:
    _chromium()
    log_path = tmp_path / "stack.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {"HS_API_PORT": str(port), "HS_PUBLIC_BASE_URL": base_url, **extra_env}
    worker = start_worker(settings, "expiry,fraud", log_path, env)
    try:
        with Merchant() as merchant, _api(settings, log_path, env, base_url):
            shots = tmp_path / "screenshots"
            shots.mkdir()
            yield Stack(base_url, log_path, merchant, shots)
    finally:
        stop(worker)
    print(f"screenshots: {tmp_path / 'screenshots'}")


@pytest.fixture
def merchant_http(stack: Stack, admin_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, headers=admin_headers, timeout=10) as client:
        yield client


def _create(http: httpx.Client, stack: Stack, **overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "success_url": f"{stack.merchant.origin}/success",
        "cancel_url": f"{stack.merchant.origin}/cancel",
        "required_avs_fields": ["cardholder", "zip"],
        # No logo: this machine has no network, and a failed image load is a console error.
        "branding": {"accent_color": "#0B5FFF", "merchant_display_name": "Mugs & Co"},
        "line_items": [
            {"description": "Blue mug", "amount": 4000, "quantity": 2},
            {"description": "Shipping", "amount": 6650, "quantity": 1},
        ],
    }
    body = seed_body(**{**defaults, **overrides})
    if "fraud_signals" not in overrides:
        del body["fraud_signals"]  # no signals: risk normal, never challenged
    r = http.post(URL, json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _elevated_signals() -> dict[str, Any]:
    """The seed's signals (admin actor, form loaded in 1970: elevated) with an IP, email and
    phone of their own, so velocity never adds to them."""
    signals: dict[str, Any] = seed_body()["fraud_signals"]
    return {
        **signals,
        "ip_address": f"203.0.113.{secrets.randbelow(250) + 1}",
        "email": f"shopper.{secrets.token_hex(4)}@example.com",
        "phone": f"+1555{secrets.randbelow(10**7):07d}",
    }


def _browser_run(test: Any) -> None:
    """Run an async Playwright scenario against the system Chromium."""
    from playwright.async_api import async_playwright

    async def main() -> None:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
            )
            try:
                context = await browser.new_context(viewport={"width": 375, "height": 800})
                await test(context)
            finally:
                await browser.close()

    asyncio.run(main())


async def _fill_card(page: Any, number: str) -> None:
    await page.get_by_label("Card number").fill(number)
    await page.get_by_label("Expiry (MM/YY)").fill("12/34")
    await page.get_by_label("Security code").fill("123")


def test_hosted_page_pays_after_a_decline_with_the_secret_only_in_the_fragment(
    stack: Stack, merchant_http: httpx.Client
) -> None:
    created = _create(merchant_http, stack)
    secret = created["client_secret"]
    session_id = created["session_id"]
    assert created["hosted_url"] == f"{stack.base_url}/{session_id}"
    link = f"{created['hosted_url']}#{secret}"

    # The page's headers: strict CSP, never framed, no referrer, no sniffing.
    r = httpx.get(created["hosted_url"])
    assert r.status_code == 200
    policy = r.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ):
        assert directive in policy
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert secret not in r.text

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        errors: list[str] = []
        # Script errors and CSP violations ("Refused to ..."); HTTP errors the page handles
        # (the 402 of a decline, a missing favicon) are logged by Chromium as resource errors.
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(link)
        await page.get_by_role("heading", name="Mugs & Co").wait_for()
        # The secret left the address bar at once.
        assert "#" not in page.url
        assert secret not in page.url
        body = await page.inner_text("body")
        assert "Blue mug" in body
        assert "\u00d7 2" in body
        assert "Shipping" in body
        assert "$146.50" in body
        assert await page.get_by_label("Name on card").is_visible()
        assert await page.get_by_label("ZIP / postal code").is_visible()
        assert await page.get_by_role("radio").count() == 1  # card only
        assert await page.get_by_role("link", name="Cancel").get_attribute("href") == (
            f"{stack.merchant.origin}/cancel"
        )
        # The page fits a 375 px screen: nothing scrolls sideways.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        await page.screenshot(path=str(stack.shots / "hosted-open.png"), full_page=True)

        # Submitting empty names the first missing field.
        await page.get_by_role("button", name="Pay $146.50").click()
        assert "Card number" in await page.get_by_role("alert").first.inner_text()

        await _fill_card(page, "4000 0000 0000 0002")
        await page.get_by_label("Name on card").fill("Ada Lovelace")
        await page.get_by_label("ZIP / postal code").fill("94107")
        await page.keyboard.press("Enter")  # the keyboard pays as well as the button
        alert = page.locator("#error")
        await alert.get_by_text("declined").wait_for()
        assert await page.get_by_role("button", name="Pay $146.50").is_enabled()
        await page.screenshot(path=str(stack.shots / "hosted-declined.png"), full_page=True)

        await page.get_by_label("Card number").fill("4242 4242 4242 4242")
        await page.get_by_role("button", name="Pay $146.50").click()
        await page.wait_for_url(f"{stack.merchant.origin}/success")
        assert errors == []

    _browser_run(scenario)

    view = merchant_http.get(f"{URL}/{session_id}").json()
    assert view["status"] == "complete"
    assert view["payment"]["last4"] == "4242"
    assert "#" not in view["hosted_url"]
    # The secret reached neither the merchant site (no Referer) nor any server log.
    success_hits = [r for r in stack.merchant.requests if r["path"] == "/success"]
    assert success_hits
    assert all(r["referer"] == "" for r in success_hits)
    assert secret not in stack.log_path.read_text()


def test_hosted_page_passes_an_sms_challenge(
    stack: Stack, merchant_http: httpx.Client, settings: Settings
) -> None:
    created = _create(merchant_http, stack, fraud_signals=_elevated_signals())
    session_id = created["session_id"]

    async def read_code() -> str:
        redis = Redis.from_url(settings.redis_url)
        try:
            outbox = DevSmsOutbox(redis, Keys(settings.key_prefix), ttl_seconds=300)
            for _ in range(100):
                code = await outbox.last_code(session_id)
                if code:
                    return code
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        raise AssertionError("no code in the dev outbox")

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        await page.goto(f"{created['hosted_url']}#{created['client_secret']}")
        await _fill_card(page, "4242424242424242")
        await page.get_by_label("Name on card").fill("Ada Lovelace")
        await page.get_by_label("ZIP / postal code").fill("94107")
        await page.get_by_role("button", name="Pay").click()
        await page.get_by_role("heading", name="Confirm it's you").wait_for()
        await page.get_by_text("******").wait_for()  # the phone hint, never the number
        code_input = page.get_by_label("Code from the text message")
        assert await code_input.evaluate("el => el === document.activeElement")
        await page.screenshot(path=str(stack.shots / "challenge.png"), full_page=True)
        code = await read_code()
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        await code_input.fill(wrong)
        await page.get_by_role("button", name="Verify and pay").click()
        await page.locator("#challenge-error").get_by_text("Wrong code").wait_for()
        await code_input.fill(code)
        await page.get_by_role("button", name="Verify and pay").click()
        await page.wait_for_url(f"{stack.merchant.origin}/success")

    _browser_run(scenario)
    assert merchant_http.get(f"{URL}/{session_id}").json()["status"] == "complete"


def test_open_page_shows_expiry_without_reload(stack: Stack, merchant_http: httpx.Client) -> None:
    created = _create(merchant_http, stack)
    session_id = created["session_id"]

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        await page.goto(f"{created['hosted_url']}#{created['client_secret']}")
        await page.get_by_label("Card number").wait_for()
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        r = await asyncio.to_thread(merchant_http.post, f"{URL}/{session_id}/expire")
        assert r.status_code == 200, r.text
        await page.get_by_role("heading", name="This checkout has expired").wait_for(timeout=6000)
        assert not await page.get_by_label("Card number").is_visible()
        assert navigations == []  # no reload: the poll noticed
        await page.screenshot(path=str(stack.shots / "expired.png"), full_page=True)

    _browser_run(scenario)


def test_embedded_page_reports_completion_to_an_allowed_parent(
    stack: Stack, merchant_http: httpx.Client
) -> None:
    parent = stack.merchant.origin
    # The shop page lives on an origin the account allows; success_url is elsewhere.
    r = merchant_http.patch("/v1/account/settings", json={"origins": {"allowed_origins": [parent]}})
    assert r.status_code == 200, r.text
    created = _create(
        merchant_http,
        stack,
        layout="embedded",
        success_url="https://shop.example.com/done",
        cancel_url="https://shop.example.com/cart",
    )
    session_id = created["session_id"]
    embed_url = created["embed_url"]
    assert embed_url == f"{stack.base_url}/embed/{session_id}"

    # Framing: only the session's and the account's origins; the parent origin is rendered
    # into the page only when allowed.
    r = httpx.get(embed_url, params={"parent_origin": parent})
    assert f"frame-ancestors {parent}" in r.headers["content-security-policy"] or (
        f" {parent}" in r.headers["content-security-policy"]
    )
    assert f'data-parent-origin="{parent}"' in r.text
    r = httpx.get(embed_url, params={"parent_origin": "https://evil.example"})
    assert "evil.example" not in r.text + r.headers["content-security-policy"]
    assert 'data-parent-origin=""' in r.text

    stack.merchant.embeds["shop"] = (embed_url, created["client_secret"])

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        await page.goto(f"{parent}/shop")
        frame = page.frame_locator("#checkout")
        await frame.get_by_label("Card number").wait_for()
        await _fill_card(frame, "4242 4242 4242 4242")
        await frame.get_by_label("Name on card").fill("Ada Lovelace")
        await frame.get_by_label("ZIP / postal code").fill("94107")
        await frame.get_by_role("button", name="Pay").click()
        await frame.get_by_role("heading", name="Payment complete").wait_for()
        log = page.locator("#log")
        await log.get_by_text("hosted_session.completed").wait_for()
        messages = [json.loads(line) for line in (await log.inner_text()).splitlines()]
        assert messages == [
            {"type": "hosted_session.ready", "session_id": session_id},
            {"type": "hosted_session.completed", "session_id": session_id},
        ]
        assert page.url == f"{parent}/shop"  # the parent stays; it decides what comes next
        await page.screenshot(path=str(stack.shots / "embedded-complete.png"), full_page=True)

    _browser_run(scenario)
    assert merchant_http.get(f"{URL}/{session_id}").json()["status"] == "complete"


async def _test_mode_inputs(page: Any) -> list[str]:
    """What the page has of test mode: the token field and any "test mode" wording, hidden
    or not (in the frame or page `page`)."""
    found = []
    if await page.locator("#token-fields, #method-token").count():
        found.append("token field")
    text = await page.locator("html").inner_html()
    if "test mode" in text.lower() or "test-mode" in text.lower():
        found.append("test-mode wording")
    return found


def test_test_mode_offers_the_simulators_tokens(stack: Stack, merchant_http: httpx.Client) -> None:
    created = _create(merchant_http, stack, allowed_methods=["card", "ach"])

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        await page.goto(f"{created['hosted_url']}#{created['client_secret']}")
        await page.get_by_label("Card number").wait_for()
        assert await page.locator("html").get_attribute("data-test-mode") == "true"
        await page.get_by_label("Bank account (ACH)").check()
        await page.get_by_label("Test-mode token").wait_for()
        assert await _test_mode_inputs(page) == ["token field", "test-mode wording"]

    _browser_run(scenario)


def test_outside_test_mode_the_pages_have_no_test_mode_input(
    adapter_stack: Stack, admin_headers: dict[str, str], settings: Settings
) -> None:
    stack = adapter_stack
    with httpx.Client(base_url=stack.base_url, headers=admin_headers, timeout=10) as http:
        _no_test_mode_scenario(stack, http, settings)


def _no_test_mode_scenario(stack: Stack, merchant_http: httpx.Client, settings: Settings) -> None:
    parent = stack.merchant.origin
    r = merchant_http.patch("/v1/account/settings", json={"origins": {"allowed_origins": [parent]}})
    assert r.status_code == 200, r.text
    hosted = _create(merchant_http, stack, allowed_methods=["card", "ach", "paypal"])
    embedded = _create(merchant_http, stack, layout="embedded", allowed_methods=["card", "ach"])
    only_ach = _create(merchant_http, stack, allowed_methods=["ach"])
    stack.merchant.embeds["shop"] = (embedded["embed_url"], embedded["client_secret"])

    async def scenario(context: Any) -> None:
        page = await context.new_page()
        await page.goto(f"{hosted['hosted_url']}#{hosted['client_secret']}")
        await page.get_by_label("Card number").wait_for()
        assert await page.locator("html").get_attribute("data-test-mode") == "false"
        # Cards only: ACH and PayPal have no real buttons yet, and no token field stands in.
        labels = await page.locator("#method-options label").all_inner_texts()
        assert labels == ["Card"]
        assert await _test_mode_inputs(page) == []
        await page.screenshot(path=str(stack.shots / "no-test-mode.png"), full_page=True)
        await _fill_card(page, "4242 4242 4242 4242")
        await page.get_by_label("Name on card").fill("Ada Lovelace")
        await page.get_by_label("ZIP / postal code").fill("94107")
        await page.get_by_role("button", name="Pay").click()
        await page.wait_for_url(f"{stack.merchant.origin}/success")

        shop = await context.new_page()
        await shop.goto(f"{parent}/shop")
        frame = shop.frame_locator("#checkout")
        await frame.get_by_label("Card number").wait_for()
        assert await _test_mode_inputs(frame) == []
        assert await frame.locator("#method-options label").all_inner_texts() == ["Card"]

        unavailable = await context.new_page()
        await unavailable.goto(f"{only_ach['hosted_url']}#{only_ach['client_secret']}")
        await unavailable.get_by_role("heading", name="Payment unavailable").wait_for()
        assert await _test_mode_inputs(unavailable) == []
        assert not await unavailable.get_by_role("button", name="Pay").is_visible()

    _browser_run(scenario)
    assert merchant_http.get(f"{URL}/{hosted['session_id']}").json()["status"] == "complete"
    # Paid through the adapter, not the simulator.
    redis = SyncRedis.from_url(settings.redis_url)
    try:
        assert redis.llen(f"{settings.key_prefix}:sandbox:sim:charges") == 1
        assert redis.llen(f"{settings.key_prefix}:sim:charges") == 0
    finally:
        redis.close()
