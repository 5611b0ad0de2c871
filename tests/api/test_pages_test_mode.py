"""The served pages in and out of test mode (the payment simulator outside production): the
HTML carries the simulator's token field only in test mode, and tells the script which."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings
from shared.devkeys import DevKeys
from tests.support.checkout import low_risk_body
from tests.support.sessions import SESSIONS_URL as URL

ADAPTER = "tests.processors:sandbox_adapter"
TEST_MODE_MARKS = (
    'id="token-fields"',
    'id="method-token"',
    "Test-mode",
    "Test mode",
    "<!--test-mode",
)


def production(settings: Settings, tmp_path: Path, dev_keys: tuple[DevKeys, Path]) -> Settings:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(dev_keys[0].jwks))
    return msgspec.structs.replace(
        settings, env="production", processor=ADAPTER, jwks_file=str(jwks)
    )


async def served_pages(settings: Settings, admin: dict[str, str]) -> tuple[str, str, str]:
    """The hosted page, the embedded page and the script, as this app serves them."""
    clock = ManualClock()
    async with AsyncTestClient(create_app(settings, clock=clock)) as client:
        r = await client.post(URL, json=low_risk_body(clock), headers=admin)
        assert r.status_code == 201, r.text
        session_id = r.json()["session_id"]
        hosted = await client.get(f"/{session_id}")
        embedded = await client.get(f"/embed/{session_id}")
        script = await client.get("/checkout-assets/checkout.js")
        assert hosted.status_code == embedded.status_code == script.status_code == 200
        return hosted.text, embedded.text, script.text


async def test_test_mode_pages_carry_the_token_field(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    hosted, embedded, _ = await served_pages(settings, admin_headers)
    for page in (hosted, embedded):
        assert 'data-test-mode="true"' in page
        assert all(mark in page for mark in TEST_MODE_MARKS)
        assert "<!--test-mode-->" in page  # the block is served whole in test mode


@pytest.mark.parametrize("where", ["adapter outside production", "production"])
async def test_outside_test_mode_no_page_carries_test_mode_inputs(
    settings: Settings,
    admin_headers: dict[str, str],
    tmp_path: Path,
    dev_keys: tuple[DevKeys, Path],
    where: str,
) -> None:
    chosen = (
        msgspec.structs.replace(settings, processor=ADAPTER)
        if where != "production"
        else production(settings, tmp_path, dev_keys)
    )
    hosted, embedded, script = await served_pages(chosen, admin_headers)
    for page in (hosted, embedded):
        assert 'data-test-mode="false"' in page
        present = [mark for mark in TEST_MODE_MARKS if mark in page]
        assert present == []
        # The rest of the form is all there.
        assert 'id="card-number"' in page
        assert 'id="pay"' in page
    # The script reads the flag, and offers non-card methods (typed tokens) only in test mode.
    assert 'root.getAttribute("data-test-mode") === "true"' in script
    assert 'if (t !== "card" && !TEST_MODE) return;' in script


def test_the_template_marks_every_test_mode_element() -> None:
    """Everything test mode shows sits inside the block the server strips."""
    from services.api.pages.routes import _template

    stripped = _template(False)
    assert "{{test_mode}}" not in stripped
    assert _template(True).count("<!--test-mode-->") == 1
    assert not any(mark in stripped for mark in TEST_MODE_MARKS)
