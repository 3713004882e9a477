"""Decoding stored events into their contract Structs, with clear errors."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.envelope import tag_of
from eventstore.errors import CorruptEvent, UnknownEventType
from eventstore.records import RecordedEvent


class EventRegistry:
    """The event types one reader understands, by their `type` tag."""

    def __init__(self, *types: type[Any]) -> None:
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        for struct_type in types:
            self._decoders[tag_of(struct_type)] = msgspec.json.Decoder(struct_type)

    def knows(self, type_: str) -> bool:
        return type_ in self._decoders

    def decode(self, event: RecordedEvent) -> Any:
        decoder = self._decoders.get(event.type)
        if decoder is None:
            raise UnknownEventType(event.stream, event.version, event.type, list(self._decoders))
        try:
            return decoder.decode(event.data)
        except msgspec.ValidationError as exc:
            raise CorruptEvent(event.stream, event.version, event.type, str(exc)) from exc

    def decode_snapshot(self, type_: str, data: bytes, stream: str, version: int) -> Any:
        return self.decode(
            RecordedEvent(
                position=0,
                stream=stream,
                version=version,
                type=type_,
                data=data,
                metadata=b"{}",
                recorded_at_us=0,
            )
        )
