"""The pure linking core: edits, replies, alert + ticket, follow-ups, deletions."""

from __future__ import annotations

from contracts.ingest import MessageDeleted, ParsedSignal, RawMessage
from contracts.signals import CloseSignal, ModifySignal, Noise, OpenSignal
from services.ingest.linking import ChannelState, LinkConfig, decide, evolve
from tests.support.ingest import TableParse, raw

TICKET = OpenSignal(symbol="XAUUSD", side="buy", entry=4357.0, sl=4340.0, tps=(4365.0, 4380.0))
TICKET_NEW_SL = OpenSignal(
    symbol="XAUUSD", side="buy", entry=4357.0, sl=4345.0, tps=(4365.0, 4380.0)
)
ALERT = OpenSignal(symbol="XAUUSD", side="buy")
BREAKEVEN = ModifySignal(action="move_sl_to_entry")
CLOSE_HALF = CloseSignal(fraction=0.5, which="partial")
EURO = OpenSignal(symbol="EURUSD", side="sell", entry=1.08, sl=1.09, tps=(1.07,))

PARSE = TableParse(
    {
        "ticket": TICKET,
        "ticket v2": TICKET_NEW_SL,
        "gold buy now": ALERT,
        "be": BREAKEVEN,
        "close half": CLOSE_HALF,
        "euro": EURO,
        "hello": Noise(),
    }
)
CONFIG = LinkConfig(alert_window_s=120, default_symbol="XAUUSD")


def feed(*messages: RawMessage) -> tuple[ChannelState, list[ParsedSignal | MessageDeleted]]:
    state = ChannelState(channel="gold")
    out = []
    for message in messages:
        for event in decide(state, message, PARSE, CONFIG):
            state = evolve(state, event)
            if not isinstance(event, RawMessage):
                out.append(event)
    return state, out


def test_new_ticket_then_its_own_signal_id_and_revision_one():
    _, (parsed,) = feed(raw(10, "ticket"))

    assert parsed.signal_id == "gold:10" and parsed.revision == 1 and parsed.link == "new"
    assert parsed.id == "parsed:gold:10:0" and parsed.result == TICKET


def test_edit_then_new_revision_of_same_signal_naming_what_changed():
    _, (first, edited) = feed(raw(10, "ticket"), raw(10, "ticket v2", edit_at_s=30))

    assert edited.signal_id == first.signal_id == "gold:10"
    assert edited.revision == 2 and edited.link == "edit" and edited.changes == ("sl",)
    assert edited.posted_ns > first.posted_ns


def test_same_revision_redelivered_or_older_edit_then_nothing_new_to_act_on():
    state, _ = feed(raw(10, "ticket"), raw(10, "ticket v2", edit_at_s=30))

    again = decide(state, raw(10, "ticket v2", edit_at_s=30), PARSE, CONFIG)
    older = decide(state, raw(10, "ticket", edit_at_s=10), PARSE, CONFIG)

    assert [type(e) for e in again] == [RawMessage]
    assert [type(e) for e in older] == [RawMessage]


def test_reply_with_breakeven_then_applies_to_the_answered_signal():
    _, (_, _, reply) = feed(raw(10, "ticket"), raw(11, "euro"), raw(12, "be", reply_to=10))

    assert reply.link == "reply" and reply.signal_id == "gold:10"
    assert reply.reply_to_signal == "gold:10"
    assert PARSE.contexts[-1].reply_to == TICKET


def test_bare_alert_then_ticket_within_window_then_one_signal():
    _, (alert, ticket) = feed(raw(20, "gold buy now"), raw(21, "ticket", at_s=60))

    assert alert.signal_id == "gold:20" and alert.link == "new"
    assert ticket.signal_id == "gold:20" and ticket.link == "completes"


def test_bare_alert_then_ticket_after_window_then_separate_signals():
    _, (_, ticket) = feed(raw(20, "gold buy now"), raw(21, "ticket", at_s=600))

    assert ticket.signal_id == "gold:21" and ticket.link == "new"


def test_alert_completed_once_then_next_ticket_is_a_new_signal():
    _, (_, _, second) = feed(
        raw(20, "gold buy now"), raw(21, "ticket", at_s=30), raw(22, "ticket", at_s=40)
    )

    assert second.signal_id == "gold:22" and second.link == "new"


def test_follow_up_without_reply_then_manages_latest_open_signal():
    _, (_, _, close) = feed(raw(10, "ticket"), raw(11, "hello"), raw(12, "close half"))

    assert close.link == "follows" and close.signal_id == "gold:10"


def test_follow_up_with_no_open_signal_then_stands_alone():
    _, (close,) = feed(raw(12, "close half"))

    assert close.link == "new" and close.signal_id == "gold:12"


def test_deleted_message_then_recorded_against_its_signal():
    _, (_, deleted) = feed(raw(10, "ticket"), raw(10, "", deleted=True, edit_at_s=5))

    assert isinstance(deleted, MessageDeleted) and deleted.signal_id == "gold:10"


def test_channel_default_symbol_and_recent_results_reach_the_parser():
    feed(raw(10, "ticket"), raw(11, "hello"), raw(12, "euro"))

    context = PARSE.contexts[-1]
    assert context.default_symbol == "XAUUSD"
    assert context.recent == (TICKET,)  # noise is not context


def test_decide_twice_on_same_input_then_identical_events():
    state, _ = feed(raw(10, "ticket"))
    message = raw(11, "be", reply_to=10)

    assert decide(state, message, PARSE, CONFIG) == decide(state, message, PARSE, CONFIG)


def test_alert_then_side_less_details_then_published_as_one_complete_open():
    details = ModifySignal(action="set_levels", entry=4357.0, sl=4340.0, tps=(4365.0,))
    parse = TableParse({"gold buy now": ALERT, "details": details})
    state = ChannelState(channel="gold")
    out = []
    for message in (raw(20, "gold buy now"), raw(21, "details", at_s=40)):
        for event in decide(state, message, parse, CONFIG):
            state = evolve(state, event)
            if isinstance(event, ParsedSignal):
                out.append(event)

    ticket = out[1]
    assert ticket.link == "completes" and ticket.signal_id == "gold:20"
    assert isinstance(ticket.result, OpenSignal)
    assert (ticket.result.side, ticket.result.symbol, ticket.result.sl) == ("buy", "XAUUSD", 4340.0)
    assert ticket.result.tps == (4365.0,)
