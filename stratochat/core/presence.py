"""Presence: a user is online while any of their sockets is open, on any node."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .events import PresenceEvent
from .hub import Hub
from .ports import ChatStore, PresenceStore

log = logging.getLogger("stratochat.presence")


class PresenceService:
    """Tells a user's contacts when the user comes online or goes offline, and keeps this node's
    entries in the PresenceStore alive while their sockets are open."""

    def __init__(self, store: PresenceStore, chats: ChatStore, hub: Hub, *, heartbeat_s: float = 10.0) -> None:
        self._store = store
        self._chats = chats
        self._hub = hub
        self._heartbeat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None
        hub.on_first_attach = self.user_connected
        hub.on_last_detach = self.user_disconnected

    async def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat(), name="presence-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # This node's users go offline now rather than when their entries expire.
        for uid in self._hub.local_user_ids():
            with contextlib.suppress(Exception):
                await self._store.set_offline(uid, self._hub.node_id)

    async def user_connected(self, user_id: str) -> None:
        try:
            await self._store.set_online(user_id, self._hub.node_id)
            await self._announce(user_id, True)
        except Exception:
            log.warning("presence update failed for %s", user_id)

    async def user_disconnected(self, user_id: str) -> None:
        try:
            await self._store.set_offline(user_id, self._hub.node_id)
            if user_id in await self._store.online([user_id]):
                return  # still connected to another node
            await self._announce(user_id, False)
        except Exception:
            log.warning("presence update failed for %s", user_id)

    async def _announce(self, user_id: str, online: bool) -> None:
        contacts = await self._chats.contacts_of(user_id)
        contacts.add(user_id)  # the user's other devices see it too
        self._hub.deliver(contacts, PresenceEvent(user_id, online))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            users = self._hub.local_user_ids()
            if users:
                try:
                    await self._store.touch(users, self._hub.node_id)
                except Exception:
                    log.warning("presence heartbeat failed")
