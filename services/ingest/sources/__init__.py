"""Signal sources: where channel messages come from (Telegram, or a replay/inject path)."""

from services.ingest.sources.base import (
    ChannelMessage,
    CursorStore,
    InMemoryCursorStore,
    SignalSource,
    Sink,
)

__all__ = ["ChannelMessage", "CursorStore", "InMemoryCursorStore", "SignalSource", "Sink"]
