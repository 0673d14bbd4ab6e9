"""``stratochat serve | users ... | aws provision``: builds Settings once and passes it on."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from .settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How every Stratochat node runs uvicorn (the CLI and the test fixtures alike)."""
    from .web.wsprotocol import DirectWebSocketProtocol, UpgradingHttpProtocol

    return dict(
        host=settings.host,
        port=settings.port,
        ws=DirectWebSocketProtocol,
        http=UpgradingHttpProtocol,
        loop="uvloop",
        lifespan="on",
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws_max_size=settings.frame_limit_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # A reconnect storm after a node restart is thousands of handshakes at once (uvicorn's default: 2048).
        backlog=4096,
        server_header=False,
    )


def raise_open_files_limit() -> tuple[int, int]:
    """Every socket is a file descriptor, and the usual soft limit (1,024) is far below what one node holds:
    lift it to the hard limit, as servers do at startup. Returns (soft, hard) as they are afterwards."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still caps at the kernel's nr_open; 2**20 is its default.
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft, hard
    return want, hard


def tune_gc() -> None:
    """Collect the young generation every 20,000 net allocations instead of 700, and the middle one
    every 2 of those: a chat server allocates a few short-lived objects per frame, and the defaults ran
    a collection every few hundred messages (12% of the CPU per message in the ``pairs`` bench), and
    full collections over every socket's objects (up to 0.5 s each, 20 in a 5,000-client reconnect;
    ``benchmarks/gc_pauses.py``). Larger thresholds cost longer young pauses (50,000 gave 0.57 s ones).
    In a reconnect storm most new objects live on (the new sockets'), so a middle collection walks
    nearly all that its young ones kept: every 5 they took 50-80 ms, every 2 they take 30-45. Objects
    alive at startup are frozen out of the walks."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 2, 1_000)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .logs import configure

    overrides = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None
    }
    settings = Settings(**overrides)
    configure(settings.log_level)
    raise_open_files_limit()  # uvicorn's --workers processes inherit it
    common = uvicorn_options(settings)
    if settings.workers > 1:
        if not settings.redis_cluster_endpoint:
            print(
                "stratochat: --workers > 1 needs a broker between the processes (set REDIS_CLUSTER_ENDPOINT)",
                file=sys.stderr,
            )
            return 2
        # Each worker process builds its own Settings from the environment.
        os.environ.update({f"STRATOCHAT_{k.upper()}": str(v) for k, v in overrides.items()})
        uvicorn.run("stratochat.app:app_from_env", factory=True, workers=settings.workers, **common)
        return 0
    app = create_app(settings)
    tune_gc()
    uvicorn.run(app, **common)
    return 0


def _users(args: argparse.Namespace) -> int:
    return asyncio.run(_users_async(args))


async def _users_async(args: argparse.Namespace) -> int:
    from .app import build_store, tier_policy
    from .core.accounts import AccountService, normalise_username
    from .core.clock import SystemClock
    from .core.errors import StratochatError
    from .core.limits import FailureWindow
    from .core.models import utc_day

    settings = Settings()
    clock = SystemClock()
    store = build_store(settings, clock)
    await store.start()
    try:
        if args.users_cmd == "list":
            after = None
            while True:
                page = await store.list_users(200, after)
                for u in page:
                    print(f"{u.username}\t{u.user_id}\t{'premium' if u.is_premium else 'free'}")
                if len(page) < 200:
                    return 0
                after = page[-1].username
        name = normalise_username(args.username)
        if args.users_cmd == "create":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
            accounts = AccountService(
                store,
                store,
                clock,
                session_ttl_s=settings.session_ttl,
                user_failures=FailureWindow(clock, 0, 1),
                ip_failures=FailureWindow(clock, 0, 1),
            )
            created = await accounts.register(name, password)
            print(f"created {created.username} ({created.user_id})")
            return 0
        user = await store.get_user_by_username(name)
        if user is None:
            print(f"stratochat: no user named '{name}'", file=sys.stderr)
            return 1
        if args.users_cmd == "set-premium":
            await store.set_premium(user.user_id, not args.off)
            print(f"{name} is now {'free' if args.off else 'premium'}")
            return 0
        usage = await store.get_usage(user.user_id, utc_day(clock.now_ms()))
        print(f"username:       {user.username}\nuser_id:        {user.user_id}")
        print(f"tier:           {'premium' if user.is_premium else 'free'}")
        print(f"messages today: {usage.messages_today}\nstorage bytes:  {usage.storage_bytes}")
        limits = tier_policy(settings).limits_for(user)
        daily = "unlimited" if limits.daily_messages is None else str(limits.daily_messages)
        print(f"daily limit:    {daily}\nstorage limit:  {limits.storage_bytes}")
        print(f"max file bytes: {limits.max_file_bytes}")
        return 0
    except StratochatError as exc:
        print(f"stratochat: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def _aws(args: argparse.Namespace) -> int:
    try:
        from .adapters.aws_provision import provision
    except ImportError as exc:
        print(f"stratochat: 'aws provision' needs the aws extra ({exc.name} is not installed)", file=sys.stderr)
        return 2
    from pydantic import ValidationError

    try:
        # Provisioning signs nothing, so it must not need SECRET_KEY (which Settings requires once a cloud
        # backend is configured): a throwaway key satisfies that check.
        settings = Settings(secret_key=secrets.token_urlsafe(48))
    except ValidationError as exc:
        print(f"stratochat: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(provision(settings, dry_run=args.dry_run))


def _bench(args: argparse.Namespace) -> int:
    # Imported here: serving never loads the load generator (websockets client, httpx, multiprocessing).
    from .bench import main as bench_main

    return bench_main(args.bench_args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stratochat", description="Self-hostable real-time chat server")
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or STRATOCHAT_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, or STRATOCHAT_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (needs REDIS_CLUSTER_ENDPOINT when > 1)")
    serve.set_defaults(fn=_serve)

    users = sub.add_parser("users", help="manage accounts")
    usub = users.add_subparsers(dest="users_cmd", required=True)
    usub.add_parser("list", help="list every account")
    show = usub.add_parser("show", help="an account's tier and usage")
    show.add_argument("username")
    create = usub.add_parser("create", help="create a local account")
    create.add_argument("username")
    pw = create.add_mutually_exclusive_group(required=True)
    pw.add_argument("--password")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    prem = usub.add_parser("set-premium", help="make an account premium (or free with --off)")
    prem.add_argument("username")
    prem.add_argument("--off", action="store_true")
    users.set_defaults(fn=_users)

    aws = sub.add_parser("aws", help="AWS operations")
    asub = aws.add_subparsers(dest="aws_cmd", required=True)
    prov = asub.add_parser("provision", help="create the DynamoDB tables and S3 bucket (idempotent)")
    prov.add_argument("--dry-run", action="store_true")
    aws.set_defaults(fn=_aws)

    # `stratochat bench --help` lists the bench's own options; they are parsed by stratochat.bench.
    bench = sub.add_parser("bench", help="load-test a server (see stratochat bench --help)", add_help=False)
    bench.prefix_chars = "\0"  # hand every argument, options included, to the bench's own parser
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(fn=_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        # Configuration mistakes: name each setting and what is wrong, without a traceback or its value.
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
            print(f"stratochat: configuration error in {where}: {err.get('msg')}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"stratochat: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
