"""Which users of this host subscribe to which channel.

Built at start from the membership events in the log alone (an index makes
that read skip everything else), then kept current as the host appends
events, so a signal is routed to its subscribers without waking every actor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from contracts.users import Subscribed, Unsubscribed, UserDeleted, UserRegistered
from eventstore import EventStore

_Channel = msgspec.json.Decoder(dict[str, object])


class Membership:
    def __init__(self, owns: Callable[[str], bool]) -> None:
        self._owns = owns
        self.by_channel: dict[str, set[str]] = {}
        self.users: set[str] = set()

    def subscribers(self, channel: str) -> list[str]:
        return sorted(self.by_channel.get(channel, ()))

    def channels(self) -> list[str]:
        return sorted(c for c, users in self.by_channel.items() if users)

    async def load(self, store: EventStore) -> int:
        """Rebuild from the log; returns how many membership events were read."""
        count = 0
        async with store.pool.connection() as conn:
            cur = conn.cursor(name="membership", binary=True)
            await cur.execute(
                "SELECT stream, type, data FROM events WHERE type IN"
                " ('user.registered', 'user.subscribed', 'user.unsubscribed', 'user.deleted')"
                " ORDER BY position"
            )
            while rows := await cur.fetchmany(5000):
                for stream, type_, data in rows:
                    count += 1
                    user = stream.removeprefix("user-")
                    if not self._owns(user):
                        continue
                    if type_ == "user.registered":
                        self.users.add(user)
                        continue
                    if type_ == "user.deleted":
                        self._forget(user)
                        continue
                    channel = str(_Channel.decode(data).get("channel", ""))
                    if type_ == "user.subscribed":
                        self.by_channel.setdefault(channel, set()).add(user)
                    else:
                        self.by_channel.get(channel, set()).discard(user)
            await conn.commit()
        return count

    def apply(self, user: str, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, Subscribed):
                self.by_channel.setdefault(event.channel, set()).add(user)
            elif isinstance(event, Unsubscribed):
                self.by_channel.get(event.channel, set()).discard(user)
            elif isinstance(event, UserDeleted):
                self._forget(user)
            elif isinstance(event, UserRegistered):
                self.users.add(user)

    def _forget(self, user: str) -> None:
        self.users.discard(user)
        for users in self.by_channel.values():
            users.discard(user)
