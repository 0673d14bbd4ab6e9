"""The core services of one node, as the composition root builds them and the web layer uses them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .accounts import AccountService
from .chats import ChatService
from .files import FileService
from .hub import Hub
from .limits import TierPolicy
from .messages import MessageService
from .models import Limits, Usage, User, utc_day
from .ports import Clock, HealthCheck, UsageStore


@dataclass
class Services:
    accounts: AccountService
    chats: ChatService
    messages: MessageService
    hub: Hub
    usage: UsageStore
    tiers: TierPolicy
    clock: Clock
    files: FileService
    # name -> backend, checked by /readyz
    health: dict[str, HealthCheck] = field(default_factory=dict)

    async def limits_and_usage(self, user: User) -> tuple[Limits, Usage]:
        usage = await self.usage.get_usage(user.user_id, utc_day(self.clock.now_ms()))
        return self.tiers.limits_for(user), usage
