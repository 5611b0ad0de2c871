"""The README's settings table stays complete: every setting is documented with its variable."""

from pathlib import Path

from shared.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    variables = Settings().to_env().keys() | {"HS_LOG_JSON"}
    missing = sorted(v for v in variables if f"| `{v}` |" not in text)
    assert not missing, f"README settings table lacks {missing}"
