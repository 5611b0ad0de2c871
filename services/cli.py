"""The `hosted-sessions` command: API server, workers, local dev stack, dev tokens, OpenAPI,
the production configuration check."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import msgspec

from shared.config import Settings
from shared.redis.jobs import QUEUES

KNOWN_QUEUES = QUEUES
DEFAULT_QUEUES = ",".join(KNOWN_QUEUES)
_CHILD_STOP_TIMEOUT_SECONDS = 10.0
_DATA_KEY_FILE = "data.key"


def _queues(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(KNOWN_QUEUES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {DEFAULT_QUEUES}, got {value!r}"
        )
    # Order kept, duplicates dropped: the worker listens to each queue once.
    return list(dict.fromkeys(names))


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return port


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def _stream_id(value: str) -> str:
    if value != "$" and not re.fullmatch(r"[0-9]{1,20}(-[0-9]{1,20})?", value):
        raise argparse.ArgumentTypeError(f"expected $ or a stream id like 1700000000000-0: {value}")
    return value


def _group_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise argparse.ArgumentTypeError(f"expected 1-64 of A-Z a-z 0-9 _ . : -, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hosted-sessions",
        description="Hosted Sessions: API, workers and local development tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host", help="interface to bind (default: HS_API_HOST)")
    api.add_argument("--port", type=_port, help="port to bind (default: HS_API_PORT)")
    api.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="API processes sharing the port through SO_REUSEPORT (default: 1, no supervisor)",
    )
    # What each of the --workers processes is started with: bind with SO_REUSEPORT.
    api.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    worker = commands.add_parser("worker", help="run an arq worker")
    worker.add_argument(
        "--queues",
        type=_queues,
        default=list(KNOWN_QUEUES),
        help=f"comma-separated queues to consume (default: {DEFAULT_QUEUES})",
    )
    worker.add_argument(
        "--check", action="store_true", help="health check of running workers; exit code only"
    )

    commands.add_parser(
        "dev", help="local stack: Redis (embedded if none is reachable), dev keys, API and worker"
    )

    token = commands.add_parser("token", help="print an admin JWT signed with the dev key")
    token.add_argument(
        "--account",
        dest="accounts",
        action="append",
        required=True,
        metavar="UID",
        help="payment account uid the token may act on (repeatable)",
    )
    token.add_argument("--ttl", type=_positive_int, default=3600, help="lifetime in seconds")
    token.add_argument(
        "--platform-admin", action="store_true", help="also grant the platform admin group"
    )

    commands.add_parser("openapi", help="print the OpenAPI schema as JSON")

    commands.add_parser(
        "check-config",
        help="list every setting production would refuse; exit 1 in production when any",
    )

    events = commands.add_parser("events", help="event stream tools")
    event_commands = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    tail = event_commands.add_parser(
        "tail", help="print events as JSON lines (the stored envelopes), following new ones"
    )
    tail.add_argument(
        "--group",
        type=_group_name,
        help="read through this consumer group (created if missing) and ack what is printed",
    )
    tail.add_argument(
        "--from",
        dest="from_id",
        type=_stream_id,
        metavar="ID",
        help="start after this stream id: 0 = every event kept, $ = only new ones (default); "
        "with --group, where the group starts when it is created",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except (ValueError, msgspec.ValidationError) as exc:
        print(f"hosted-sessions: invalid settings: {exc}", file=sys.stderr)
        return 2
    command: str = args.command
    if command == "api":
        refused = _refuse_start(settings, "api")
        if refused or args.workers > 1:
            return refused or _api_workers(
                settings, host=args.host, port=args.port, workers=args.workers
            )
        return _api(settings, host=args.host, port=args.port, reuse_port=args.reuse_port)
    if command == "worker":
        if not args.check and (refused := _refuse_start(settings, "worker")):
            return refused
        return _worker(settings, queues=args.queues, check=args.check)
    if command == "check-config":
        return _check_config(settings)
    if command == "dev":
        return _dev(settings)
    if command == "token":
        return _token(
            settings, accounts=args.accounts, ttl=args.ttl, platform_admin=args.platform_admin
        )
    if command == "openapi":
        return _openapi(settings)
    if command == "events":  # `tail` is its only subcommand (required by the parser)
        return _events_tail(settings, group=args.group, from_id=args.from_id)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def _refuse_start(settings: Settings, command: str) -> int:
    """2 (with every reason on stderr) when this process must not start, else 0: production
    refuses what shared/production.py lists; anywhere, HS_PROCESSOR must name a processor."""
    from shared.payments.factory import uses_simulator
    from shared.production import processor_problems, production_problems, refusal_message

    if settings.env == "production":
        problems = production_problems(settings)
        if problems:
            print(f"hosted-sessions {command}: {refusal_message(problems)}", file=sys.stderr)
            return 2
    elif not uses_simulator(settings):
        for problem in processor_problems(settings):
            print(
                f"hosted-sessions {command}: {problem.setting}: {problem.reason}", file=sys.stderr
            )
            return 2
    return 0


def _check_config(settings: Settings) -> int:
    """Every setting production would refuse, one per line on stdout. Exit 1 when this is
    production and it would refuse to start; outside production the list is advice (exit 0)."""
    from shared.production import production_problems

    problems = production_problems(settings)
    production = settings.env == "production"
    print(f"hosted-sessions check-config: HS_ENV={settings.env}")
    for problem in problems:
        print(f"  {problem.setting}: {problem.reason}")
    if not problems:
        print("no setting that production refuses: the API and the workers will start")
        return 0
    if production:
        print(f"{len(problems)} setting(s) to fix: the API and the workers refuse to start")
        return 1
    print(
        f"{len(problems)} setting(s) production would refuse; in {settings.env} they do not "
        "stop a start"
    )
    return 0


def _api(settings: Settings, *, host: str | None, port: int | None, reuse_port: bool) -> int:
    import uvicorn

    from services.api.app import create_app
    from services.api.server import protocol_for
    from shared.heap import settle_heap
    from shared.logging import configure_logging

    # The app sees the address it is actually served on, whichever way it was given.
    settings = msgspec.structs.replace(
        settings,
        api_host=host if host is not None else settings.api_host,
        api_port=port if port is not None else settings.api_port,
    )
    configure_logging(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        # httptools with our limits on the request head (it has none of its own).
        http=protocol_for(settings),
        access_log=False,
        # structlog (configure_logging) owns logging; uvicorn's dictConfig would replace it.
        log_config=None,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    settle_heap()
    server.run(
        sockets=[_reuse_port_socket(settings.api_host, settings.api_port)] if reuse_port else None
    )
    # uvicorn exits by itself on bind/lifespan failures; this covers a stop before start.
    return 0 if server.started else 3


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` with SO_REUSEPORT: every API process of `--workers`
    binds its own, and the kernel spreads new connections across them (uvicorn listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _api_workers(settings: Settings, *, host: str | None, port: int | None, workers: int) -> int:
    """`workers` API processes on one port (SO_REUSEPORT) until SIGINT/SIGTERM or one exits.
    Supervised as `dev` supervises its children: own process groups, stopped by this process
    (SIGTERM, each drains its requests), killed by the kernel if it dies first. A process that
    exits by itself stops the others: the orchestrator restarts the whole group."""
    from shared.process import parent_death_preexec

    host = host if host is not None else settings.api_host
    port = port if port is not None else settings.api_port
    taken = _address_taken(host, port)
    if taken is not None:
        # With SO_REUSEPORT a process of an older group would silently share the port.
        print(f"hosted-sessions api: {host}:{port} is already in use ({taken})", file=sys.stderr)
        return 1
    stop_signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_signals.append(signum)  # nothing else: see the handler in _dev

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    die_with_us = parent_death_preexec()
    argv = ["api", "--host", host, "--port", str(port), "--reuse-port"]
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(workers):
            if stop_signals:
                return 0
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.cli", *argv],
                    stdin=subprocess.DEVNULL,
                    process_group=0,
                    preexec_fn=die_with_us,
                )
            )
        while not stop_signals:
            dead = [proc for proc in children if proc.poll() is not None]
            if dead:
                print(
                    f"hosted-sessions api: process {dead[0].pid} exited with code "
                    f"{dead[0].returncode}; stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                return dead[0].returncode if dead[0].returncode > 0 else 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_children(children)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _worker(settings: Settings, *, queues: Sequence[str], check: bool) -> int:
    from shared.heap import settle_heap
    from shared.logging import configure_logging
    from workers.main import check_worker, run_worker

    configure_logging(settings)
    if check:
        return check_worker(settings, queues)
    settle_heap()
    return run_worker(settings, queues)


def _token(settings: Settings, *, accounts: Sequence[str], ttl: int, platform_admin: bool) -> int:
    from shared.devkeys import ensure_dev_keys, mint_admin_token

    groups = [settings.jwt_admin_group]
    if platform_admin:
        groups.append(settings.jwt_platform_admin_group)
    # The token is meant for `$(hosted-sessions token ...)`: anything the key helpers print
    # or log (structlog's default logger prints to stdout) goes to stderr instead.
    with contextlib.redirect_stdout(sys.stderr):
        keys, _ = ensure_dev_keys(Path(settings.dev_dir))
        token = mint_admin_token(
            keys,
            issuer=settings.jwt_issuer,
            account_uids=accounts,
            groups=groups,
            accounts_claim=settings.jwt_accounts_claim,
            token_use=settings.jwt_token_use,
            ttl_seconds=ttl,
        )
    print(token)
    return 0


def _openapi(settings: Settings) -> int:
    from litestar.serialization import encode_json

    from services.api.app import create_app

    # Building the app runs no lifespan, so no Redis is needed to print the schema.
    schema = create_app(settings).openapi_schema.to_schema()
    # Examples in the schema are msgspec structs, datetimes etc.: litestar's encoder knows
    # them, json.dumps does not; the round trip only adds the indentation.
    print(json.dumps(json.loads(encode_json(schema)), indent=2))
    return 0


def _events_tail(settings: Settings, *, group: str | None, from_id: str | None) -> int:
    import asyncio

    from shared.logging import configure_logging

    # stdout carries nothing but events (it is meant for pipes): logs go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        configure_logging(settings)
    try:
        asyncio.run(_tail_events(settings, group=group, from_id=from_id))
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly; Python's final flush must not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _tail_events(settings: Settings, *, group: str | None, from_id: str | None) -> None:
    import asyncio
    import socket

    from shared.events.model import EVENT_ENCODER
    from shared.events.stream import EventConsumer, StreamTail
    from shared.redis.client import create_redis
    from shared.redis.keys import Keys

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Reads block at most a second, so Ctrl-C stops within one and closes cleanly.
        loop.add_signal_handler(sig, stop.set)
    redis = create_redis(settings, client_name="hosted-sessions-tail")
    keys = Keys(settings.key_prefix)
    out = sys.stdout.buffer
    start = from_id or "$"
    ready = f"hosted-sessions events tail: following every partition from {start}"
    try:
        if group is None:
            tail = StreamTail(redis, keys, start_id=start)
            await tail.start()
            print(f"{ready}; Ctrl-C stops", file=sys.stderr, flush=True)
            while not stop.is_set():
                for _, raw in await tail.read():
                    out.write(raw + b"\n")
                out.flush()
            return
        member = f"tail:{socket.gethostname()}:{os.getpid()}"
        consumer = EventConsumer(redis, keys, group, member, start_id=start)
        try:
            await consumer.ensure_groups()
            print(
                f"{ready} as {member} of group {group}; Ctrl-C stops", file=sys.stderr, flush=True
            )
            while not stop.is_set():
                messages = await consumer.read()
                for message in messages:
                    # msgspec writes the decoded envelope back byte for byte as stored.
                    out.write(EVENT_ENCODER.encode(message.event) + b"\n")
                out.flush()
                # Acked once printed: a tail killed in between prints them again (at least once).
                await consumer.ack(messages)
        finally:
            await consumer.close()
    finally:
        await redis.aclose(close_connection_pool=True)


def ensure_data_key(path: Path) -> str:
    """The base64 data key kept in `path`, created (32 random bytes, mode 0600) if missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
    else:
        key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key
    try:
        valid = len(base64.b64decode(key, validate=True)) == 32
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{path} does not hold base64 of 32 bytes; delete it to make a new one")
    return key


def _dev(settings: Settings) -> int:
    """Redis (embedded if none answers), API and worker, until SIGINT/SIGTERM or a child
    exits. Process model (docs/architecture.md): the children are in their own process
    groups, stopped by this process, and killed by the kernel if it dies first."""
    from shared.devkeys import ensure_dev_keys
    from shared.process import parent_death_preexec
    from shared.redis.embedded import EmbeddedRedis, redis_reachable

    taken = _address_taken(settings.api_host, settings.api_port)
    if taken is not None:
        # Typically a stack that is still running: a new one would not serve this port,
        # and its worker would share the queues with the old one's.
        print(
            f"hosted-sessions dev: {settings.api_host}:{settings.api_port} is already in use "
            f"({taken}); stop what runs there (ss -ltnp 'sport = :{settings.api_port}') or "
            "choose another port with HS_API_PORT",
            file=sys.stderr,
            flush=True,
        )
        return 1

    dev_dir = Path(settings.dev_dir).resolve()
    dev_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, str] = {}

    _, jwks_path = ensure_dev_keys(dev_dir)
    if not settings.jwks_url and not settings.jwks_file:
        overrides["HS_JWKS_FILE"] = str(jwks_path.resolve())
    if not settings.data_key:
        # Persistent, so sessions encrypted in one run still decrypt in the next.
        overrides["HS_DATA_KEY"] = ensure_data_key(dev_dir / _DATA_KEY_FILE)
    if "HS_PUBLIC_BASE_URL" not in os.environ:
        # Locally the API serves the checkout pages itself: hosted_url/embed_url open them.
        overrides["HS_PUBLIC_BASE_URL"] = f"http://{settings.api_host}:{settings.api_port}"

    env = {**os.environ, **settings.to_env(), **overrides}
    stop_signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Nothing but an append: a second signal can run this handler again while the first
        # run is still inside it (`make run` gets every SIGTERM twice: the group's, then the
        # one make forwards), and a handler that takes a lock (threading.Event.set did)
        # deadlocks there, so the stack never stopped.
        stop_signals.append(signum)

    # Installed before anything is started, so an early Ctrl-C still runs the clean-up below.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    # The kernel SIGKILLs each child if this process dies without stopping them (SIGKILL).
    die_with_us = parent_death_preexec()
    embedded: EmbeddedRedis | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        redis_url = settings.redis_url
        if not redis_reachable(redis_url):
            # Kept under dev_dir with an append-only file, so dev data survives restarts.
            embedded = EmbeddedRedis(
                data_dir=dev_dir / "redis", appendonly=True, die_with_parent=True
            ).start()
            redis_url = embedded.url
            env["REDIS_URL"] = redis_url
        for name in ("api", "worker"):
            if stop_signals:
                return 0
            # Own process groups: a terminal Ctrl-C reaches only this process, which then
            # stops the children exactly once, before Redis goes away.
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", name],
                env=env,
                stdin=subprocess.DEVNULL,
                process_group=0,
                preexec_fn=die_with_us,
            )
        redis_note = f"embedded Redis {redis_url}" if embedded else f"Redis {redis_url}"
        print(
            f"hosted-sessions dev: API on http://{settings.api_host}:{settings.api_port} "
            f"({redis_note}); mint an admin token with: "
            f"{_own_script()} token --account <ACCOUNT_UID>",
            flush=True,
        )
        while not stop_signals:
            dead = [(name, proc) for name, proc in children.items() if proc.poll() is not None]
            if dead:
                name, proc = dead[0]
                print(
                    f"hosted-sessions dev: {name} exited with code {proc.returncode}; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                # A child that exits by itself is a failure, even with code 0 or a signal.
                return proc.returncode if proc.returncode > 0 else 1
            # A signal cuts the sleep short only for its handler: seen within 0.2 s.
            time.sleep(0.2)
        return 0
    finally:
        _stop_children(list(children.values()))
        if embedded is not None:
            embedded.stop()
        # Ignored, not restored, for the few milliseconds left: a late Ctrl-C (pressed
        # again) would raise KeyboardInterrupt, and the interpreter's exit puts back the
        # default actions, so either would end a clean stop by a signal instead of its code.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _address_taken(host: str, port: int) -> str | None:
    """Why the API could not serve `host`:`port` (something answers there, or the address
    cannot be bound), or None when it is free."""
    # As uvicorn binds: IPv6 when the host has a colon, SO_REUSEADDR so that connections
    # of a previous run still in TIME_WAIT do not count.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # A server on every interface is asked on loopback.
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            if probe.connect_ex((wildcard.get(host, host), port)) == 0:
                return "something answers there"
        except OSError:
            pass  # unresolvable or unreachable: the bind below says what is wrong
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"it cannot be bound: {exc.strerror or exc}"
    return None


def _own_script() -> str:
    # `make run` uses the virtualenv's script, which is usually not on PATH: show that one.
    script = Path(sys.executable).parent / "hosted-sessions"
    if not script.is_file():
        return "hosted-sessions"
    try:
        return os.path.relpath(script)
    except ValueError:
        return str(script)


def _stop_children(children: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in children:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + _CHILD_STOP_TIMEOUT_SECONDS
    for proc in children:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
