"""`make lint`'s layer contracts ([tool.importlinter] in pyproject.toml) catch what they
forbid: `lint-imports` runs on a copy of the tree, clean and then with one bad import added
(docs/architecture.md, "Layers")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for package in ("shared", "services", "workers"):
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy is imported from its own directory (lint-imports puts the working directory
    # first on the path), not the installed tree.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _add_import(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    source = path.read_text()
    # After the __future__ import, which must stay first.
    head, sep, tail = source.partition("from __future__ import annotations\n")
    assert sep, f"{module} has no __future__ import to put the bad one after"
    path.write_text(head + sep + line + "\n" + tail)


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "shared.sessions.service",
            "import services.api.errors",
            "shared never imports services or workers",
        ),
        (
            "workers.fraud",
            "import services.api.lifespan",
            "services.api and workers never import each other",
        ),
        (
            "shared.sessions.model",
            "import shared.redis.compact",
            "pure modules never reach Redis, not even through another module",
        ),
        (
            "shared.risk.rules",
            "import shared.sessions.store",  # Redis through another module
            "pure modules never reach Redis, not even through another module",
        ),
        (
            "shared.checkout.service",
            "from redis.asyncio import Redis",
            "only shared.redis, shared.events, the stores and the wiring talk to Redis",
        ),
    ],
)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    _add_import(tree, module, line)
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout + result.stderr
