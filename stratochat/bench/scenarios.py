"""Scenario setup over the public contract: accounts, chats, and which worker drives which client.

Every client is one socket. A sender's messages carry ``"<sender key>:<n>:<send time, ns>:"`` in
their content (and ``"<key>-<n>"`` as ``client_msg_id``), so any receiver can tell who sent what, spot
a repeat and time the delivery; the clock is CLOCK_MONOTONIC, which all processes of one machine share.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .config import BenchConfig
from .server import BenchSetupError, local_port_range

T = TypeVar("T")
# Registering and signing in cost an argon2 hash each on the server; more at once only queue there.
SETUP_CONCURRENCY = 16


@dataclass(slots=True)
class ClientSpec:
    cid: int
    ws_url: str
    token: str | None = None
    # Where this client sends (pairs, fanout), and the key its messages carry (None: it only receives).
    chat_id: str | None = None
    sender_key: int | None = None
    # Sender keys whose messages this client must receive, and those whose send window it releases.
    receives_from: tuple[int, ...] = ()
    tracks: tuple[int, ...] = ()
    # reconnect: the chats this client recovers.
    chats: tuple[str, ...] = ()


@dataclass(slots=True)
class WorkerPlan:
    index: int
    scenario: str
    target: str
    base_url: str
    run_id: str
    clients: list[ClientSpec] = field(default_factory=list)
    window: int = 8
    # Open loop: messages/s of each sender (None: closed loop with ``window`` in flight).
    rate_per_sender: float | None = None
    size: int = 64
    deflate: bool = False
    connect_concurrency: int = 200
    drain: float = 5.0
    timeout: float = 60.0


@dataclass(slots=True)
class Account:
    user_id: str
    username: str
    token: str


@dataclass(slots=True)
class Setup:
    plans: list[WorkerPlan]
    senders: int = 0
    accounts: list[Account] = field(default_factory=list)
    # reconnect: chat_id -> the accounts of its two members.
    chats: dict[str, tuple[Account, Account]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + "/ws"
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :] + "/ws"
    raise BenchSetupError(f"--url must start with http:// or https://, not {base_url!r}")


def check_ports(base_url: str, sockets: int) -> None:
    """Sockets from this machine to one server address each take an ephemeral port: refuse a run that
    cannot have them all (``net.ipv4.ip_local_port_range``) instead of failing thousands of connects."""
    ports = local_port_range()
    if ports is None:
        return
    free = ports[1] - ports[0] + 1
    # HTTP connections (setup, recovery) and sockets still in TIME_WAIT from the last run need some too.
    if sockets + 1000 > free:
        raise BenchSetupError(
            f"{sockets:,} sockets to {base_url} need as many local ports, but net.ipv4.ip_local_port_range "
            f"{ports[0]}-{ports[1]} has {free:,}; widen it (sysctl -w net.ipv4.ip_local_port_range='1024 65535')"
        )


async def gather_limited(jobs: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def _refused(what: str, r: httpx.Response) -> BenchSetupError:
    return BenchSetupError(f"{what} answered {r.status_code}: {r.text[:300]}")


class ContractClient:
    """The few requests setup needs, as any client of the public contract makes them."""

    def __init__(self, base_url: str, timeout: float) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, trust_env=False)
        self.password = secrets.token_urlsafe(12)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def account(self, username: str) -> Account:
        body = {"username": username, "password": self.password}
        try:
            r = await self.http.post("/api/auth/register", json=body)
            if r.status_code != 201:
                raise _refused(f"POST /api/auth/register ({username})", r)
            r = await self.http.post("/api/auth/login", json=body)
            if r.status_code != 200:
                raise _refused(f"POST /api/auth/login ({username})", r)
        except httpx.HTTPError as exc:
            raise BenchSetupError(f"cannot reach {self.http.base_url}: {exc!r}") from exc
        data = r.json()
        return Account(data["user"]["user_id"], data["user"]["username"], data["token"])

    async def accounts(self, run_id: str, n: int) -> list[Account]:
        return await gather_limited(
            [functools.partial(self.account, f"bench-{run_id}-{i}") for i in range(n)],
            SETUP_CONCURRENCY,
        )

    async def chat(self, owner: Account, members: list[str], title: str | None = None) -> str:
        body: dict[str, Any] = {"members": members}
        if title is not None:
            body["title"] = title
        try:
            r = await self.http.post("/api/chats", json=body, headers={"Authorization": f"Bearer {owner.token}"})
        except httpx.HTTPError as exc:
            raise BenchSetupError(f"POST /api/chats failed: {exc!r}") from exc
        if r.status_code not in (200, 201):
            raise _refused("POST /api/chats", r)
        return str(r.json()["chat"]["chat_id"])


def _plans(cfg: BenchConfig, scenario: str, base_url: str, run_id: str, n_workers: int) -> list[WorkerPlan]:
    rate = None
    return [
        WorkerPlan(
            index=i,
            scenario=scenario,
            target=cfg.target,
            base_url=base_url,
            run_id=run_id,
            window=cfg.window,
            rate_per_sender=rate,
            size=cfg.size,
            deflate=cfg.deflate,
            connect_concurrency=max(1, cfg.connect_concurrency // n_workers),
            drain=cfg.drain,
            timeout=cfg.timeout,
        )
        for i in range(n_workers)
    ]


async def setup(cfg: BenchConfig, scenario: str, base_url: str) -> Setup:
    """Create what ``scenario`` needs on the server and split its clients over the workers."""
    run_id = secrets.token_hex(3)
    relay = cfg.target == "relay"
    url = ws_url(base_url)
    api = ContractClient(base_url, cfg.timeout)
    try:
        if scenario == "pairs":
            n_workers = min(cfg.workers, cfg.pairs)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            accounts = [] if relay else await api.accounts(run_id, 2 * cfg.pairs)
            if relay:
                chats = [f"{run_id}-p{i}" for i in range(cfg.pairs)]
            else:
                chats = await gather_limited(
                    [
                        functools.partial(api.chat, accounts[2 * i], [accounts[2 * i + 1].username])
                        for i in range(cfg.pairs)
                    ],
                    SETUP_CONCURRENCY,
                )
            for i, chat in enumerate(chats):
                for me, peer in ((2 * i, 2 * i + 1), (2 * i + 1, 2 * i)):
                    plans[i % n_workers].clients.append(
                        ClientSpec(
                            cid=me,
                            ws_url=f"{url}?room={chat}" if relay else url,
                            token=None if relay else accounts[me].token,
                            chat_id=chat,
                            sender_key=me,
                            receives_from=(peer,),
                            tracks=(peer,),
                        )
                    )
            senders = 2 * cfg.pairs
            info = {"pairs": cfg.pairs, "senders": senders}
        elif scenario == "fanout":
            n_workers = min(cfg.workers, cfg.group)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            accounts = [] if relay else await api.accounts(run_id, cfg.group + 1)
            if relay:
                chat = f"{run_id}-fanout"
            else:
                chat = await api.chat(accounts[0], [a.username for a in accounts[1:]], f"bench fanout {run_id}")
            plans[0].clients.append(
                ClientSpec(
                    cid=0,
                    ws_url=f"{url}?room={chat}" if relay else url,
                    token=None if relay else accounts[0].token,
                    chat_id=chat,
                    sender_key=0,
                )
            )
            for j in range(1, cfg.group + 1):
                # Receiver 1 shares worker 0 with the sender and paces it (the window counts its deliveries).
                plans[(j - 1) % n_workers].clients.append(
                    ClientSpec(
                        cid=j,
                        ws_url=f"{url}?room={chat}" if relay else url,
                        token=None if relay else accounts[j].token,
                        receives_from=(0,),
                        tracks=(0,) if j == 1 else (),
                    )
                )
            senders = 1
            info = {"group": cfg.group, "senders": 1}
        elif scenario == "idle":
            check_ports(base_url, cfg.sockets)
            n_workers = min(cfg.workers, cfg.sockets)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            n_users = cfg.accounts_for(cfg.sockets)
            accounts = [] if relay else await api.accounts(run_id, n_users)
            for i in range(cfg.sockets):
                plans[i % n_workers].clients.append(
                    ClientSpec(
                        cid=i,
                        ws_url=f"{url}?room={run_id}-i{i}" if relay else url,
                        token=None if relay else accounts[i % n_users].token,
                    )
                )
            senders = 0
            info = {"sockets": cfg.sockets, "users": 0 if relay else n_users}
        elif scenario == "reconnect":
            if relay:
                raise BenchSetupError("reconnect needs a Stratochat target: the relay keeps no history")
            check_ports(base_url, cfg.clients + 2 * cfg.live_pairs)
            n_workers = min(cfg.workers, cfg.clients)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            n_users = max(2, cfg.accounts_for(cfg.clients))
            n_users += n_users % 2  # users come in pairs, one direct chat each
            accounts = await api.accounts(run_id, n_users)
            chat_ids = await gather_limited(
                [
                    functools.partial(api.chat, accounts[2 * k], [accounts[2 * k + 1].username])
                    for k in range(n_users // 2)
                ],
                SETUP_CONCURRENCY,
            )
            for i in range(cfg.clients):
                u = i % n_users
                plans[i % n_workers].clients.append(
                    ClientSpec(cid=i, ws_url=url, token=accounts[u].token, chats=(chat_ids[u // 2],))
                )
            pairs_of = {c: (accounts[2 * k], accounts[2 * k + 1]) for k, c in enumerate(chat_ids)}
            live = await _live_plan(cfg, api, url, run_id, n_workers, base_url) if cfg.live_pairs else None
            if live is not None:
                plans.append(live)
            result = Setup(plans, 2 * cfg.live_pairs, accounts, pairs_of)
            result.info = {
                "clients": cfg.clients,
                "users": n_users,
                "chats": len(pairs_of),
                "missed": cfg.missed,
                "live_pairs": cfg.live_pairs,
                "live_rate": cfg.live_rate if cfg.live_pairs else None,
            }
            return result
        else:
            raise BenchSetupError(f"unknown scenario {scenario!r}")
    finally:
        await api.aclose()
    if cfg.rate is not None and senders:
        for plan in plans:
            plan.rate_per_sender = cfg.rate / senders
    return Setup(plans, senders, accounts, info=info)


async def _live_plan(
    cfg: BenchConfig, api: ContractClient, url: str, run_id: str, index: int, base_url: str
) -> WorkerPlan:
    """reconnect: the live pairs, in a load-generator process of their own, so the recovering clients'
    work in the generator does not delay their sends. Open loop: ``live_rate`` msg/s in total."""
    accounts = await api.accounts(f"{run_id}-live", 2 * cfg.live_pairs)
    chats = await gather_limited(
        [functools.partial(api.chat, accounts[2 * i], [accounts[2 * i + 1].username]) for i in range(cfg.live_pairs)],
        SETUP_CONCURRENCY,
    )
    (plan,) = _plans(cfg, "reconnect", base_url, run_id, 1)
    plan.index = index
    plan.rate_per_sender = cfg.live_rate / (2 * cfg.live_pairs)
    for i, chat in enumerate(chats):
        for me, peer in ((2 * i, 2 * i + 1), (2 * i + 1, 2 * i)):
            plan.clients.append(
                ClientSpec(
                    cid=me,
                    ws_url=url,
                    token=accounts[me].token,
                    chat_id=chat,
                    sender_key=me,
                    receives_from=(peer,),
                    tracks=(peer,),
                )
            )
    return plan


async def send_missed(cfg: BenchConfig, base_url: str, chats: dict[str, tuple[Account, Account]]) -> dict[str, Any]:
    """reconnect: ``cfg.missed`` messages into every chat over REST (from the members' other device) while
    the clients are away. Returns the seqs each chat acknowledged (201) and the failures."""
    acked: dict[str, list[int]] = {c: [] for c in chats}
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base_url, timeout=cfg.timeout, limits=limits, trust_env=False) as http:

        async def send(chat_id: str, member: Account, n: int) -> None:
            body = {"content": f"missed {n} " + "x" * max(0, cfg.size - 10), "client_msg_id": f"missed-{n}"}
            try:
                r = await http.post(
                    f"/api/chats/{chat_id}/messages", json=body, headers={"Authorization": f"Bearer {member.token}"}
                )
            except httpx.HTTPError as exc:
                errors[f"send: {type(exc).__name__}"] = errors.get(f"send: {type(exc).__name__}", 0) + 1
                return
            if r.status_code == 201:
                acked[chat_id].append(int(r.json()["message"]["seq"]))
            else:
                errors[f"send: http {r.status_code}"] = errors.get(f"send: http {r.status_code}", 0) + 1

        jobs: list[Callable[[], Awaitable[None]]] = [
            functools.partial(send, c, members[n % 2], n) for c, members in chats.items() for n in range(cfg.missed)
        ]
        await gather_limited(jobs, 32)
    return {"acked": acked, "errors": errors}
