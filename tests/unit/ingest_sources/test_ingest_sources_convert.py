from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from ingest_sources_stubs import GOLD, GOLD_ID, T0, message
from telethon.tl.types import Message, MessageReplyStoryHeader, PeerChannel, PeerUser

from services.ingest.sources.base import ChannelMessage
from services.ingest.sources.telegram import channel_name_from_config, to_channel_message

T0_NS = 1_795_253_400 * 10**9  # 2026-11-21T09:30:00Z


def test_to_channel_message_when_plain_post_then_all_fields_mapped() -> None:
    msg = message(7, "BUY XAUUSD 2350 SL 2340 TP 2360", date=T0)

    out = to_channel_message(msg, "gold_signals")

    assert out == ChannelMessage(
        channel_id=GOLD_ID,
        channel="gold_signals",
        message_id=7,
        date_ns=T0_NS,
        edit_date_ns=None,
        text="BUY XAUUSD 2350 SL 2340 TP 2360",
        reply_to_id=None,
        is_forward=False,
        grouped_id=None,
        deleted=False,
    )


def test_to_channel_message_chat_id_is_the_marked_channel_id() -> None:
    out = to_channel_message(message(1, channel=GOLD), "g")

    assert out.channel_id == -1001234567890 == GOLD_ID


def test_to_channel_message_when_reply_then_reply_to_id_set() -> None:
    out = to_channel_message(message(9, "close half", reply_to=7), "g")

    assert out.reply_to_id == 7


def test_to_channel_message_when_reply_to_a_story_then_no_reply_id() -> None:
    msg = Message(
        id=9,
        peer_id=PeerChannel(GOLD),
        date=T0,
        message="x",
        reply_to=MessageReplyStoryHeader(peer=PeerUser(1), story_id=3),
    )

    assert to_channel_message(msg, "g").reply_to_id is None


def test_to_channel_message_when_forwarded_then_is_forward() -> None:
    assert to_channel_message(message(3, forwarded=True), "g").is_forward is True


def test_to_channel_message_when_edited_then_edit_date_in_ns() -> None:
    edited = T0 + timedelta(minutes=2, microseconds=5)

    out = to_channel_message(message(3, date=T0, edit_date=edited), "g")

    assert out.date_ns == T0_NS
    assert out.edit_date_ns == T0_NS + 120 * 10**9 + 5_000


def test_to_channel_message_when_album_then_grouped_id_kept() -> None:
    assert (
        to_channel_message(message(3, grouped_id=13_579_246_801), "g").grouped_id == 13_579_246_801
    )


def test_to_channel_message_when_media_without_caption_then_empty_text() -> None:
    msg = Message(id=4, peer_id=PeerChannel(GOLD), date=T0, message="")

    assert to_channel_message(msg, "g").text == ""


def test_to_channel_message_when_naive_date_then_read_as_utc() -> None:
    msg = message(5, date=datetime(2026, 11, 21, 9, 30))

    assert to_channel_message(msg, "g").date_ns == T0_NS


def test_to_channel_message_when_no_date_then_error_names_message() -> None:
    msg = Message(id=5, peer_id=PeerChannel(GOLD), date=None, message="x")

    with pytest.raises(ValueError, match="message 5"):
        to_channel_message(msg, "g")


def test_channel_message_json_round_trip() -> None:
    out = to_channel_message(message(9, "x", reply_to=7, edit_date=T0.replace(tzinfo=UTC)), "g")

    assert msgspec.json.decode(msgspec.json.encode(out), type=ChannelMessage) == out


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("gold_signals", ("gold_signals", "gold_signals")),
        ("@Gold_Signals", ("gold_signals", "gold_signals")),
        ("https://t.me/Gold_Signals/", ("gold_signals", "gold_signals")),
        (" -1001234567890 ", (-1001234567890, None)),
    ],
)
def test_channel_name_from_config(entry: str, expected: tuple[object, object]) -> None:
    assert channel_name_from_config(entry) == expected


def test_channel_name_from_config_when_empty_then_error() -> None:
    with pytest.raises(ValueError, match="'@'"):
        channel_name_from_config("@")


def test_gold_constant_matches_telethon_marking() -> None:
    assert int(f"-100{GOLD}") == GOLD_ID
