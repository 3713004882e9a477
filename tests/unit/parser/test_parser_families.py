"""One family of real channel formats per test, with messages written here (not from the corpus).

Each test shows a rule generalising beyond the labelled corpus: other
symbols, other prices, other separators than the ones the corpus holds.
"""

from __future__ import annotations

from typing import Any

from contracts.signals import ParseContext
from services.ingest.parser import parse, to_public


def pub(text: str, context: ParseContext | None = None) -> dict[str, Any]:
    return to_public(parse(text, context))


def test_headline_with_labelled_lines_then_levels_read_in_order() -> None:
    got = pub("EURGBP SELL NOW 0.8612\nT.P 1 : 0.8590\nTarget 2 = 0.8570\nS.L → 0.8640")

    assert got["kind"] == "open"
    assert (got["symbol"], got["side"], got["order_type"]) == ("EURGBP", "sell", "market")
    assert got["entry"] == 0.8612
    assert got["tps"] == [0.859, 0.857]
    assert got["sl"] == 0.864


def test_label_glued_to_price_then_price_read() -> None:
    got = pub("USOIL buy 71.20\nTP71.90\nSL70.60")

    assert (got["side"], got["entry"], got["sl"], got["tps"]) == ("buy", 71.2, 70.6, [71.9])


def test_zone_with_shorthand_tail_then_range_sorted() -> None:
    got = pub("XAUUSD SELL 2731/36\nSL 2741\nTP 2725\nTP 2718")

    assert got["entry"] is None
    assert got["entry_range"] == [2731.0, 2736.0]


def test_zone_high_to_low_with_en_dash_then_range_sorted() -> None:
    got = pub("Gold buy 2655 – 2649\nSL 2643\nTP 2662")

    assert got["entry_range"] == [2649.0, 2655.0]
    assert got["side"] == "buy"


def test_zone_with_decimal_tail_then_tail_replaces_decimals() -> None:
    got = pub("GBPJPY buy 191.20-45\nsl 190.70\ntp 192.10")

    assert got["entry_range"] == [191.2, 191.45]


def test_zone_written_with_to_word_then_range() -> None:
    got = pub("Sell USDCAD from 1.3870 to 1.3885 SL 1.3920 TP1 1.3820 TP2 1.3790")

    assert got["entry_range"] == [1.387, 1.3885]
    assert got["tps"] == [1.382, 1.379]


def test_sideless_ticket_with_stop_above_then_sell_inferred() -> None:
    got = pub("US30\nENTRY 42150-42180\nSL 42260\nTP 42050\nTP 41900")

    assert got["kind"] == "open"
    assert got["side"] == "sell"
    assert got["symbol"] == "US30"


def test_details_without_symbol_or_side_then_set_levels() -> None:
    got = pub("Entry 2655-2650\nSL 2644\nTP1 2661\nTP2 2667")

    assert got["kind"] == "modify"
    assert got["action"] == "set_levels"
    assert got["entry_range"] == [2650.0, 2655.0]
    assert got["tps"] == [2661.0, 2667.0]


def test_bare_alert_then_open_without_levels() -> None:
    got = pub("Silver sell now")

    assert got["kind"] == "open"
    assert (got["symbol"], got["side"], got["entry"], got["sl"]) == ("XAGUSD", "sell", None, None)


def test_bare_alert_in_gold_channel_when_context_names_symbol_then_symbol_filled() -> None:
    got = pub("Buy now", ParseContext(default_symbol="XAUUSD"))

    assert (got["kind"], got["symbol"], got["side"]) == ("open", "XAUUSD", "buy")


def test_form_layout_then_fields_read() -> None:
    got = pub(
        "Pair: NZDJPY\nDirection: SHORT\nEntry Price: 88.450\nStop Loss: 88.900\n"
        "Take Profit 1: 88.100\nTake Profit 2: 87.700\nRisk: 1%"
    )

    assert (got["symbol"], got["side"], got["entry"], got["sl"]) == ("NZDJPY", "sell", 88.45, 88.9)
    assert got["tps"] == [88.1, 87.7]


def test_cornix_numbered_blocks_then_entries_form_range() -> None:
    got = pub(
        "#SOL/USDT\nSignal Type: Regular (Short)\nLeverage: Cross 20x\n\nEntry Targets:\n"
        "1) 152.40\n2) 154.10\n\nTake-Profit Targets:\n1) 150.00\n2) 147.50\n3) 144.00\n\n"
        "Stop Targets:\n1) 158.20"
    )

    assert (got["symbol"], got["side"]) == ("SOLUSDT", "sell")
    assert got["entry_range"] == [152.4, 154.1]
    assert got["tps"] == [150.0, 147.5, 144.0]
    assert got["sl"] == 158.2


def test_russian_labels_then_fields_read() -> None:
    got = pub("BTC/USDT ЛОНГ\nВход: 61200\nСтоп: 60100\nТейк 1: 62500\nТейк 2: 63800")

    assert (got["symbol"], got["side"], got["entry"], got["sl"]) == (
        "BTCUSDT",
        "buy",
        61200.0,
        60100.0,
    )
    assert got["tps"] == [62500.0, 63800.0]


def test_single_line_with_stop_before_entry_and_abbreviated_targets_then_expanded() -> None:
    got = pub("Gold buy now SL 2618 Entry 2624.5 Tp 28 Tp 32 Tp 40")

    assert got["entry"] == 2624.5
    assert got["sl"] == 2618.0
    assert got["tps"] == [2628.0, 2632.0, 2640.0]


def test_emoji_coded_levels_without_labels_then_geometry_assigns() -> None:
    got = pub("#EURCHF Sell 0.9420 🔻 0.9465 🔹 0.9390 🔹 0.9350")

    assert got["sl"] == 0.9465
    assert got["tps"] == [0.939, 0.935]


def test_buy_above_then_stop_order() -> None:
    got = pub("NAS100 buy above 20150\nSL 20080\nTP 20300")

    assert (got["order_type"], got["entry"]) == ("stop", 20150.0)


def test_sell_limit_then_limit_order() -> None:
    got = pub("EURUSD sell limit 1.0950 sl 1.0990 tp 1.0880")

    assert (got["order_type"], got["side"]) == ("limit", "sell")


def test_limit_word_without_price_then_market() -> None:
    got = pub("AUDUSD buy limit\nSL 0.6480\nTP 0.6600")

    assert got["order_type"] == "market"


def test_pip_distances_instead_of_prices_then_pips_fields() -> None:
    got = pub("GBPUSD buy 1.2710\nSL 35 pips\nTP 40-80 pips")

    assert (got["sl"], got["sl_pips"]) == (None, 35.0)
    assert (got["tps"], got["tp_pips"]) == ([], [40.0, 80.0])


def test_pip_note_beside_price_then_price_kept_and_note_ignored() -> None:
    got = pub("XAUUSD SELL 2650\nSL 2658 (80 pips)\nTP 2640 (100 pips)")

    assert (got["sl"], got["sl_pips"], got["tp_pips"]) == (2658.0, None, None)


def test_runner_and_withheld_stop_then_left_out() -> None:
    got = pub("GOLD BUY 2600\nTP1 2605\nTP2 2610\nTP3 open\nSL: premium")

    assert got["tps"] == [2605.0, 2610.0]
    assert got["sl"] is None


def test_several_signals_in_one_message_then_first_and_n_signals() -> None:
    got = pub("EURJPY buy 162.10\nSL 161.60\nTP 162.90\n\nCADJPY sell 109.80\nSL 110.30\nTP 109.00")

    assert got["symbol"] == "EURJPY"
    assert got["n_signals"] == 2
    assert got["also"][0]["symbol"] == "CADJPY"


def test_math_bold_and_no_break_spaces_then_read() -> None:
    got = pub("𝐗𝐀𝐔𝐔𝐒𝐃 𝐁𝐔𝐘\u00a02601\n𝐒𝐋\u00a02594\n𝐓𝐏\u00a02610")

    assert (got["symbol"], got["side"], got["entry"], got["sl"], got["tps"]) == (
        "XAUUSD",
        "buy",
        2601.0,
        2594.0,
        [2610.0],
    )


def test_decimal_commas_then_read_as_points() -> None:
    got = pub("USDJPY BUY 151,20\nSL 150,70\nTP 152,10")

    assert (got["entry"], got["sl"], got["tps"]) == (151.2, 150.7, [152.1])


def test_broker_suffix_then_stripped() -> None:
    assert pub("GER40.s sell 19250 sl 19320 tp 19100")["symbol"] == "GER40"


def test_word_aliases_then_mapped() -> None:
    assert pub("Dow Jones buy 43100 sl 42950 tp 43400")["symbol"] == "US30"
    assert pub("Vàng bán 2650 sl 2660")["symbol"] == "XAUUSD"
    assert pub("Bitcoin long 64000 sl 62500 tp 67000")["symbol"] == "BTCUSD"


def test_stop_on_wrong_side_then_rejected() -> None:
    got = pub("EURUSD BUY 1.0850\nSL 1.0900\nTP 1.0950")

    assert got["kind"] == "rejected"
    assert "1.09" in got["reason"]


def test_targets_on_both_sides_then_rejected() -> None:
    got = pub("XAUUSD SELL 2650\nSL 2660\nTP 2640\nTP 2670")

    assert got["kind"] == "rejected"


def test_fat_finger_zone_edge_then_rejected() -> None:
    assert pub("Gold buy 26551 - 2650\nSL 2644\nTP 2660")["kind"] == "rejected"


def test_breakeven_in_several_languages_then_move_sl_to_entry() -> None:
    for text in (
        "SL to BE now",
        "Move stop to break even",
        "dời sl về entry",
        "стоп в бу",
        "ustaw SL na BE",
    ):
        got = pub(text)
        assert (got["kind"], got.get("action")) == ("modify", "move_sl_to_entry"), text


def test_move_stop_with_price_then_move_sl_value() -> None:
    got = pub("Move SL to 2641 now")

    assert (got["kind"], got["action"], got["value"]) == ("modify", "move_sl", 2641.0)


def test_close_half_then_partial_close() -> None:
    got = pub("Close 50% now and hold the rest")

    assert (got["kind"], got["fraction"], got["which"]) == ("close", 0.5, "partial")


def test_close_the_sells_then_which_sell() -> None:
    got = pub("Close all sells")

    assert (got["kind"], got["which"]) == ("close", "sell")


def test_cancel_pending_then_cancel() -> None:
    got = pub("Cancel the sell limit, setup invalid")

    assert got["kind"] == "cancel"


def test_conditional_close_then_noise() -> None:
    assert pub("If 15M closes above 2660 we will exit")["kind"] == "noise"


def test_past_tense_report_then_noise() -> None:
    assert pub("We closed with a loss yesterday, next one will be better")["kind"] == "noise"


def test_close_meaning_near_then_noise() -> None:
    assert pub("Price is close to TP2 now, great move")["kind"] == "noise"


def test_hit_report_then_noise() -> None:
    assert pub("EURUSD TP2 hit +45 pips ✅")["kind"] == "noise"
    assert pub("GBPJPY SELL TP1 +30 pips done")["kind"] == "noise"


def test_standing_rule_in_ticket_footer_then_ticket_only() -> None:
    got = pub("XAUUSD BUY 2600\nSL 2590\nTP 2610\nMove SL to BE once TP1 is hit")

    assert got["kind"] == "open"
    assert "also" not in got


def test_close_then_new_ticket_then_close_with_open_in_also() -> None:
    got = pub("Close sell now\nGold buy 2612\nSL 2604")

    assert (got["kind"], got["which"]) == ("close", "sell")
    assert got["also"][0]["kind"] == "open"
    assert got["also"][0]["side"] == "buy"


def test_targets_only_then_set_tp() -> None:
    got = pub("EURUSD tp 1.0890\ntp 1.0920")

    assert (got["kind"], got["action"], got["value"]) == ("modify", "set_tp", [1.089, 1.092])


def test_lone_stop_then_set_sl() -> None:
    assert pub("SL 2598")["action"] == "set_sl"


def test_abbreviated_stop_move_with_context_then_completed_from_trade() -> None:
    reply = parse("XAUUSD BUY 2633\nSL 2625")
    got = pub("Move SL to 29", ParseContext(reply_to=reply))

    assert got["value"] == 2629.0


def test_same_instruction_said_twice_then_applied_once():
    from services.ingest.parser import parse, to_public

    result = to_public(parse("Close half now, secure profits"))

    assert result["kind"] == "close" and result["fraction"] == 0.5
    assert not result.get("also")
