"""Scenario setup over the public contract: accounts, chats, and which worker drives which client.

Every client is one socket. A sender's messages carry ``"<sender key>:<n>:<send time, ns>:"`` in
their content (and ``"<key>-<n>"`` as ``client_msg_id``), so any receiver can tell who sent what, spot
a repeat and time the delivery; the clock is CLOCK_MONOTONIC, which all processes of one machine share.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .config import BenchConfig
from .http import Connections, HttpError
from .server import BenchSetupError, local_port_range

T = TypeVar("T")
# Registering and signing in cost an argon2 hash each on the server; more at once only queue there.
SETUP_CONCURRENCY = 16
# reconnect: the requests in flight while the messages the clients miss are sent.
MISSED_CONNECTIONS = 32


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
    # socketio: the room this client joins (its key, sent in the connect packet's auth); it sends to
    # the room in ``chat_id``.
    room: str | None = None


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
    # Added to the worker process's niceness at start (reconnect's recovering clients).
    nice: int = 0


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


def ws_url(base_url: str, path: str = "/ws") -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + path
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :] + path
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


def check_node_ports(base_urls: list[str], sockets: int) -> None:
    """``check_ports`` for sockets spread evenly over the nodes: each node's address has its own ports."""
    per_node = -(-sockets // len(base_urls))
    for base_url in base_urls:
        check_ports(base_url, per_node)


# Engine.IO v4 over a WebSocket from the start (no long-polling), as python-socketio serves it.
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"


class Nodes:
    """The socket URL of each client: client ``cid`` on node ``cid % n``. A pair is two consecutive
    clients, so with several nodes its partners always sit on different ones (every message crosses
    the broker); fan-out receivers and idle sockets spread evenly."""

    def __init__(self, base_urls: list[str], target: str, run_id: str) -> None:
        path = SOCKETIO_PATH if target == "socketio" else "/ws"
        self.urls = [ws_url(u, path) for u in base_urls]
        self.target = target
        self.run_id = run_id

    def url(self, cid: int, relay_room: str | None = None) -> str:
        url = self.urls[cid % len(self.urls)]
        if self.target == "relay" and relay_room is not None:
            return f"{url}?room={relay_room}"
        return url

    def room(self, name: str | int) -> str | None:
        """socketio: a room name unique to this run, so runs against one long-lived server do not mix."""
        return f"{self.run_id}-{name}" if self.target == "socketio" else None


async def gather_limited(jobs: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


SIGNUP_LIMIT_HINT = (
    "The server limits sign-ups from one address (STRATOCHAT_SIGNUP_RATE per minute, bursts of "
    "STRATOCHAT_SIGNUP_BURST: 100 by default) and every scenario registers accounts of its own: bench a server "
    "started with STRATOCHAT_SIGNUP_RATE=0, or leave out --url and the bench starts one with its limits lifted"
)


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
            if r.status_code == 429:
                raise BenchSetupError(
                    f"POST /api/auth/register ({username}) answered 429: {r.text[:200]}. {SIGNUP_LIMIT_HINT}"
                )
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


async def setup(cfg: BenchConfig, scenario: str, base_urls: list[str]) -> Setup:
    """Create what ``scenario`` needs on the server and split its clients over the workers (and their
    sockets over the nodes of ``base_urls``; REST setup goes to the first, the nodes share a store)."""
    run_id = secrets.token_hex(3)
    base_url = base_urls[0]
    # The baselines have no accounts and no chats: a "chat" is a room name.
    baseline = cfg.target != "stratochat"
    nodes = Nodes(base_urls, cfg.target, run_id)
    api = ContractClient(base_url, cfg.timeout)
    try:
        if scenario == "pairs":
            n_workers = min(cfg.workers, cfg.pairs)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            accounts = [] if baseline else await api.accounts(run_id, 2 * cfg.pairs)
            if baseline:
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
                            ws_url=nodes.url(me, chat),
                            token=None if baseline else accounts[me].token,
                            # socketio: each joins its own room and sends to its partner's.
                            chat_id=nodes.room(peer) or chat,
                            sender_key=me,
                            receives_from=(peer,),
                            tracks=(peer,),
                            room=nodes.room(me),
                        )
                    )
            senders = 2 * cfg.pairs
            info = {"pairs": cfg.pairs, "senders": senders}
        elif scenario == "fanout":
            n_workers = min(cfg.workers, cfg.group)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            accounts = [] if baseline else await api.accounts(run_id, cfg.group + 1)
            if baseline:
                chat = f"{run_id}-fanout"
            else:
                chat = await api.chat(accounts[0], [a.username for a in accounts[1:]], f"bench fanout {run_id}")
            # socketio: the receivers all join the group's room, the sender one of its own.
            group_room = nodes.room("fanout")
            plans[0].clients.append(
                ClientSpec(
                    cid=0,
                    ws_url=nodes.url(0, chat),
                    token=None if baseline else accounts[0].token,
                    chat_id=group_room or chat,
                    sender_key=0,
                    room=nodes.room("fanout-sender"),
                )
            )
            for j in range(1, cfg.group + 1):
                # Receiver 1 shares worker 0 with the sender and paces it (the window counts its deliveries).
                plans[(j - 1) % n_workers].clients.append(
                    ClientSpec(
                        cid=j,
                        ws_url=nodes.url(j, chat),
                        token=None if baseline else accounts[j].token,
                        receives_from=(0,),
                        tracks=(0,) if j == 1 else (),
                        room=group_room,
                    )
                )
            senders = 1
            info = {"group": cfg.group, "senders": 1}
        elif scenario == "idle":
            check_node_ports(base_urls, cfg.sockets)
            n_workers = min(cfg.workers, cfg.sockets)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            n_users = cfg.accounts_for(cfg.sockets)
            accounts = [] if baseline else await api.accounts(run_id, n_users)
            for i in range(cfg.sockets):
                plans[i % n_workers].clients.append(
                    ClientSpec(
                        cid=i,
                        ws_url=nodes.url(i, f"{run_id}-i{i}"),
                        token=None if baseline else accounts[i % n_users].token,
                        room=nodes.room(f"i{i}"),
                    )
                )
            senders = 0
            info = {"sockets": cfg.sockets, "users": 0 if baseline else n_users}
        elif scenario == "reconnect":
            if baseline:
                raise BenchSetupError(f"reconnect needs a Stratochat target: the {cfg.target} keeps no history")
            check_node_ports(base_urls, cfg.clients + 2 * cfg.live_pairs)
            n_workers = min(cfg.workers, cfg.clients)
            plans = _plans(cfg, scenario, base_url, run_id, n_workers)
            for plan in plans:
                plan.nice = cfg.storm_nice
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
                    ClientSpec(cid=i, ws_url=nodes.url(i), token=accounts[u].token, chats=(chat_ids[u // 2],))
                )
            pairs_of = {c: (accounts[2 * k], accounts[2 * k + 1]) for k, c in enumerate(chat_ids)}
            live = await _live_plan(cfg, api, nodes, run_id, n_workers, base_url) if cfg.live_pairs else None
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
                "storm_nice": cfg.storm_nice,
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
    cfg: BenchConfig, api: ContractClient, nodes: Nodes, run_id: str, index: int, base_url: str
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
                    ws_url=nodes.url(me),  # like the pairs: partners on different nodes
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
    errors: Counter[str] = Counter()
    async with Connections(base_url, MISSED_CONNECTIONS, cfg.timeout) as http:

        async def send(chat_id: str, member: Account, n: int) -> None:
            body = {"content": f"missed {n} " + "x" * max(0, cfg.size - 10), "client_msg_id": f"missed-{n}"}
            try:
                r = await http.request(
                    "POST", f"/api/chats/{chat_id}/messages", {"Authorization": f"Bearer {member.token}"}, body
                )
                if r.status != 201:
                    errors[f"send: http {r.status}"] += 1
                    return
                acked[chat_id].append(int(r.json()["message"]["seq"]))
            except HttpError as exc:
                errors[f"send: {'http ' if exc.status else ''}{exc.code}"] += 1
            except (KeyError, ValueError, TypeError) as exc:
                errors[f"send: {type(exc).__name__}"] += 1

        jobs: list[Callable[[], Awaitable[None]]] = [
            functools.partial(send, c, members[n % 2], n) for c, members in chats.items() for n in range(cfg.missed)
        ]
        await gather_limited(jobs, MISSED_CONNECTIONS)
    return {"acked": acked, "errors": dict(errors)}
