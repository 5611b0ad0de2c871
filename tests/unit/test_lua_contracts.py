"""The Lua boundary has one definition on each side, checked here: write_session.lua's
`local M_<FIELD> = <position>` and `local FLAG_<NAME> = '<letter>'` lines are WriteMeta's
fields and WriteFlag's letters (shared/sessions/store.py), and the script reads meta only
through them. Every script is a file under shared/redis/lua/, loaded only through
shared/redis/scripts.py, and compiles on a real Redis."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from shared.redis.scripts import lua_source
from shared.sessions.store import WriteFlag, WriteMeta

ROOT = Path(__file__).resolve().parents[2]
LUA_DIR = ROOT / "shared" / "redis" / "lua"
SOURCE_DIRS = ("shared", "services", "workers", "bench", "soak")

_META_DECL = re.compile(r"^local (M_\w+) = (\d+)$", re.M)
_FLAG_DECL = re.compile(r"^local (FLAG_\w+) = '(\w)'$", re.M)


def _write_session() -> str:
    return lua_source("write_session")


def test_the_script_declares_the_meta_fields_python_encodes() -> None:
    declared = _META_DECL.findall(_write_session())
    expected = [(f"M_{name.upper()}", str(i)) for i, name in enumerate(WriteMeta._fields, 1)]
    assert declared == expected


def test_the_script_declares_the_flags_python_sets() -> None:
    declared = dict(_FLAG_DECL.findall(_write_session()))
    expected = {f"FLAG_{n}": v for n, v in vars(WriteFlag).items() if n.isupper()}
    assert declared == expected
    assert len(set(expected.values())) == len(expected), "two flags share a letter"


def test_the_script_reads_meta_and_flags_only_by_name() -> None:
    source = _write_session()
    body = _FLAG_DECL.sub("", _META_DECL.sub("", source))
    code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
    # No field read or key named by a bare number, no flag spelled as its letter.
    assert not re.findall(r"m\[\s*\d+\s*\]|key\(\s*\d+\s*\)", code)
    assert not re.findall(r"string\.find\([^,]+,\s*'", code)
    # Every name declared is read: a field Python sends that nothing reads is a drift too.
    for name, _ in [*_META_DECL.findall(source), *_FLAG_DECL.findall(source)]:
        assert re.search(rf"\b{name}\b", code), f"{name} is declared but never read"


def test_meta_encodes_its_fields_in_order() -> None:
    meta = WriteMeta(*(f"v{i}" for i in range(len(WriteMeta._fields))))  # type: ignore[arg-type]  # any printable value: only the order is under test
    assert meta.encode().split(";") == [f"v{i}" for i in range(len(WriteMeta._fields))]


def _loaded_names() -> dict[str, list[str]]:
    """Script name -> the files that load it (`load_script(redis, "<name>")`)."""
    found: dict[str, list[str]] = {}
    for top in SOURCE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            if path == ROOT / "shared" / "redis" / "scripts.py":
                continue  # the loader itself
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("load_script", "lua_source")
                ):
                    name = node.args[-1]
                    assert isinstance(name, ast.Constant), f"{path}: a script named at run time"
                    found.setdefault(str(name.value), []).append(str(path.relative_to(ROOT)))
    return found


def test_every_script_is_a_file_loaded_by_name_and_every_file_is_used() -> None:
    files = {p.stem for p in LUA_DIR.glob("*.lua")}
    loaded = _loaded_names()
    assert set(loaded) <= files, f"loaded but missing: {set(loaded) - files}"
    assert files <= set(loaded), f"never loaded: {files - set(loaded)}"


def test_scripts_are_registered_only_by_the_loader() -> None:
    allowed = {
        Path("shared/redis/scripts.py"),  # the loader
        Path("shared/redis/multiplex.py"),  # the client that routes registered scripts
        Path("shared/redis/cluster.py"),  # its cluster twin (one connection per primary)
    }
    offenders = []
    for top in SOURCE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if relative not in allowed and "register_script(" in path.read_text():
                offenders.append(str(relative))
    assert offenders == []


@pytest.mark.parametrize("name", sorted(p.stem for p in LUA_DIR.glob("*.lua")))
def test_every_script_compiles_on_redis(name: str, redis_url: str) -> None:
    # SCRIPT LOAD compiles without running: a syntax error is an error reply here.
    client = SyncRedis.from_url(redis_url)
    try:
        sha: str = client.script_load(lua_source(name))  # type: ignore[assignment]  # redis-py's stub types sync and async replies together
    finally:
        client.close()
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
