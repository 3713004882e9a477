"""The demo's channel traffic: what real signal channels post, in order.

Prices are filled in from live quotes when the script is built, so entries
sit near the market (as a channel's do) and distance checks pass or fail for
the reasons a user would expect.
"""

from __future__ import annotations

from services.ingest.inject import ScriptLine


def _p(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def build_script(prices: dict[str, float], *, base_id: int) -> list[ScriptLine]:
    g = prices.get("XAUUSD", 2000.0)
    e = prices.get("EURUSD", 1.08)
    u = prices.get("US30", 39000.0)
    gold_open = base_id + 1
    gold_alert = base_id + 5
    fx_open = base_id + 3
    return [
        # a classic ticket, two targets
        ScriptLine(
            channel="gold",
            id=gold_open,
            text=f"XAUUSD BUY NOW {_p(g, 2)}\nSL {_p(g - 15, 2)}\nTP1 {_p(g + 8, 2)}\nTP2 {_p(g + 20, 2)}",
        ),
        ScriptLine(
            channel="gold",
            id=base_id + 2,
            text="Good morning traders ☀️ volatile session ahead, manage your risk!",
            delay_s=0.5,
        ),
        # a form layout on another channel
        ScriptLine(
            channel="fx_signals",
            id=fx_open,
            text=(
                "Trade Direction: SELL\nPair: EUR/USD\n"
                f"Entry Price: {_p(e, 5)}\nStop Loss: {_p(e + 0.0030, 5)}\n"
                f"Take Profit: {_p(e - 0.0040, 5)}"
            ),
            delay_s=0.5,
        ),
        # the gold ticket is edited: the stop moves up
        ScriptLine(
            channel="gold",
            edit_of=gold_open,
            text=f"XAUUSD BUY NOW {_p(g, 2)}\nSL {_p(g - 10, 2)}\nTP1 {_p(g + 8, 2)}\nTP2 {_p(g + 20, 2)}",
            delay_s=1.0,
        ),
        # an index, single-line compact
        ScriptLine(
            channel="indices",
            id=base_id + 4,
            text=f"US30 BUY {_p(u, 0)} SL {_p(u - 80, 0)} TP {_p(u + 120, 0)}",
            delay_s=0.5,
        ),
        # a bare alert, then its ticket a moment later
        ScriptLine(channel="gold", id=gold_alert, text="Gold sell now 🔥", delay_s=0.5),
        ScriptLine(
            channel="gold",
            id=base_id + 6,
            text=(
                f"Sell zone {_p(g + 1, 1)}-{_p(g + 3, 1)}\nSL {_p(g + 14, 1)}\n"
                f"TP1 {_p(g - 6, 1)}\nTP2 {_p(g - 15, 1)}"
            ),
            delay_s=1.5,
        ),
        # follow-ups on the first ticket: breakeven, then close half
        ScriptLine(
            channel="gold",
            id=base_id + 7,
            text="Move SL to entry ✅",
            reply_to=gold_open,
            delay_s=1.5,
        ),
        ScriptLine(
            channel="gold",
            id=base_id + 8,
            text="Close half now, secure profits 💰",
            reply_to=gold_open,
            delay_s=1.0,
        ),
        ScriptLine(channel="fx_signals", id=base_id + 9, text="TP1 hit ✅ +40 pips", delay_s=0.5),
        # the sell from the alert is closed
        ScriptLine(
            channel="gold",
            id=base_id + 10,
            text="Close all sells",
            reply_to=gold_alert,
            delay_s=1.0,
        ),
        ScriptLine(channel="fx_signals", id=base_id + 11, text="Close EURUSD now", delay_s=0.5),
    ]
