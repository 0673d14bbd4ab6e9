"""In-process presence: the embedded default. Entries never expire (a node cannot die without its
presence dying with it)."""

from __future__ import annotations

from collections.abc import Collection


class MemoryPresence:
    def __init__(self) -> None:
        self._nodes: dict[str, set[str]] = {}

    async def set_online(self, user_id: str, node_id: str) -> None:
        self._nodes.setdefault(user_id, set()).add(node_id)

    async def set_offline(self, user_id: str, node_id: str) -> None:
        nodes = self._nodes.get(user_id)
        if nodes is not None:
            nodes.discard(node_id)
            if not nodes:
                del self._nodes[user_id]

    async def online(self, user_ids: Collection[str]) -> set[str]:
        return {u for u in user_ids if u in self._nodes}

    async def touch(self, user_ids: Collection[str], node_id: str) -> None:
        return None
