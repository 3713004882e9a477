"""The paper broker's pure core: an MT5-like hedging account as a synchronous state machine.

No clock and no I/O: time comes in with each quote (`apply_quote`). Every
operation is O(log n) at worst: stop-loss, take-profit and pending-order
triggers sit in per-symbol heaps (one for "fires when the price falls to the
level", one for "rises to the level", for bid and for ask), entries are
invalidated lazily through a generation number, and floating P&L is kept as
per-symbol aggregates so equity costs O(symbols), not O(positions).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Literal

import msgspec

from contracts import broker_codes as codes
from contracts.broker import (
    AccountInfo,
    BrokerOrderResult,
    OrderRequest,
    PendingOrder,
    Position,
    Quote,
    RetryLater,
    Side,
    SymbolSpec,
    found_as_result,
)

from .facts import (
    PaperAccountOpened,
    PaperFact,
    PaperOrderCancelled,
    PaperOrderFilled,
    PaperOrderModified,
    PaperOrderPlaced,
    PaperPositionClosed,
    PaperPositionModified,
    PaperPositionOpened,
)
from .feed import PaperSymbol
from .rules import check_pending_price, check_stops, check_volume, reject

_EPS = 1e-9

EventKind = Literal["order_filled", "order_cancelled", "stop_loss", "take_profit"]
CloseReason = Literal["close", "partial", "stop_loss", "take_profit"]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class PaperEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something the feed caused: a pending order filled, or a position stopped out."""

    kind: EventKind
    symbol: str
    client_id: str | None
    order_id: str | None
    position_id: str | None
    price: float
    volume: float
    profit: float | None
    time: float
    reason: str = ""


class ClosedTrade(msgspec.Struct, frozen=True, kw_only=True):
    """A (partial) close, with its realised P&L in account currency."""

    position_id: str
    client_id: str | None
    symbol: str
    side: Side
    volume: float
    open_price: float
    close_price: float
    profit: float
    reason: CloseReason
    time: float


@dataclass(slots=True)
class _Pos:
    id: str
    client_id: str | None
    symbol: str
    buy: bool
    volume: float
    open_price: float
    sl: float | None
    tp: float | None
    comment: str | None
    open_time: float
    margin: float
    gen: int = 0


@dataclass(slots=True)
class _Ord:
    id: str
    client_id: str
    symbol: str
    buy: bool
    kind: Literal["limit", "stop"]
    volume: float
    price: float
    sl: float | None
    tp: float | None
    comment: str | None
    open_time: float
    gen: int = 0


# heap entry: (key, seq, kind, target id, generation); kind is "sl", "tp" or "ord"
_Entry = tuple[float, int, str, str, int]


class _Sym:
    __slots__ = (
        "above_ask",
        "above_bid",
        "below_ask",
        "below_bid",
        "buy_notional",
        "buy_vol",
        "open",
        "paper",
        "quote",
        "sell_notional",
        "sell_vol",
    )

    def __init__(self, paper: PaperSymbol) -> None:
        self.paper = paper
        self.quote: Quote | None = None
        self.open = True
        # "below" heaps fire when price <= level (stored negated: max-heap); "above" when >=
        self.below_bid: list[_Entry] = []
        self.above_bid: list[_Entry] = []
        self.below_ask: list[_Entry] = []
        self.above_ask: list[_Entry] = []
        self.buy_vol = self.buy_notional = self.sell_vol = self.sell_notional = 0.0


def _ok(code: int) -> tuple[int, str, str]:
    entry = codes.lookup(code)
    return entry.numeric, entry.name, entry.reason


class PaperBook:
    """Orders, positions and money of one simulated account.

    With `journal=True` every state change is also recorded as a fact
    (`paper_events`) in `journal`, for the owner to store; `restore(fact)`
    folds stored facts back into a book.
    """

    def __init__(
        self,
        symbols: dict[str, PaperSymbol],
        *,
        balance: float = 10_000.0,
        currency: str = "USD",
        leverage: float = 100.0,
        history_limit: int = 100_000,
        journal: bool = False,
    ) -> None:
        self._syms = {name: _Sym(p) for name, p in symbols.items()}
        self.balance = balance
        self.currency = currency
        self.leverage = leverage
        self._positions: dict[str, _Pos] = {}
        self._orders: dict[str, _Ord] = {}
        self._placed: dict[str, BrokerOrderResult] = {}  # client id -> first success
        self._open_by_client: dict[str, str] = {}  # client id -> open position/order id
        self._used_margin = 0.0
        self._next_id = 1_000_000
        self._seq = 0
        self.history: deque[ClosedTrade] = deque(maxlen=history_limit)
        self.journal: list[PaperFact] | None = [] if journal else None

    # ---- market state ---------------------------------------------------------------

    def set_market_open(self, symbol: str, is_open: bool) -> None:
        self._sym(symbol).open = is_open

    def last_quote(self, symbol: str) -> Quote:
        st = self._sym(symbol)
        if st.quote is None:
            raise RetryLater(
                f"no quote for {symbol} yet",
                broker_code=10021,
                broker_code_name=codes.lookup(10021).name,
                retry_after_s=1.0,
            )
        return st.quote

    def apply_quote(self, quote: Quote) -> list[PaperEvent]:
        """Take a new quote and fire every pending order, SL and TP it crosses."""
        st = self._sym(quote.symbol)
        st.quote = quote
        events: list[PaperEvent] = []
        bid, ask = quote.bid, quote.ask
        fired = True
        while fired:  # a fill can add stops that the same quote already crosses
            fired = False
            for heap, price, below in (
                (st.below_bid, bid, True),
                (st.above_bid, bid, False),
                (st.below_ask, ask, True),
                (st.above_ask, ask, False),
            ):
                while heap and ((-heap[0][0] >= price) if below else (heap[0][0] <= price)):
                    _, _, kind, target, gen = heapq.heappop(heap)
                    event = self._fire(kind, target, gen, quote)
                    if event is not None:
                        events.append(event)
                        fired = True
        return events

    # ---- trading --------------------------------------------------------------------

    def place(self, req: OrderRequest) -> BrokerOrderResult:
        """Place an order; an already placed client id returns what exists."""
        canonical = self.canonical(req.symbol)
        if canonical != req.symbol:
            req = msgspec.structs.replace(req, symbol=canonical)
        prior = self._placed.get(req.client_id)
        if prior is not None:
            found = self.find(req.client_id)
            if found is not None:
                return found_as_result(found, duplicate=True)
            return msgspec.structs.replace(prior, duplicate=True)
        st = self._sym_for_trade(req.symbol)
        quote = self.last_quote(req.symbol)
        volume = check_volume(st.paper.spec, req.volume)
        buy = req.side == "buy"
        if req.order_type == "market":
            ref = quote.bid if buy else quote.ask
            entry = quote.ask if buy else quote.bid
        else:
            assert req.price is not None  # OrderRequest guarantees it
            entry = ref = round(req.price, st.paper.spec.digits)
            check_pending_price(req.symbol, buy, req.order_type, entry, quote)
        check_stops(req.symbol, buy, ref, req.sl, req.tp)
        margin = self._margin(st, volume, entry)
        if margin > self.margin_free() + _EPS:
            raise reject(
                codes.NO_MONEY,
                f"{volume} lots of {req.symbol} need margin {margin:.2f} {self.currency};"
                f" free margin is {self.margin_free():.2f}",
            )
        oid = self._new_id()
        if req.order_type == "market":
            self._open_position(
                oid,
                req.client_id,
                st,
                buy,
                volume,
                entry,
                req.sl,
                req.tp,
                req.comment,
                quote.time,
                margin,
            )
            code, name, reason = _ok(codes.DONE)
            result = BrokerOrderResult(
                status="filled",
                client_id=req.client_id,
                order_id=oid,
                position_id=oid,
                fill_price=entry,
                volume=volume,
                broker_code=code,
                broker_code_name=name,
                reason=reason,
            )
            if self.journal is not None:
                self.journal.append(
                    PaperPositionOpened(
                        id="",
                        ts=_ns(quote.time),
                        position_id=oid,
                        client_id=req.client_id,
                        symbol=req.symbol,
                        side=req.side,
                        volume=volume,
                        open_price=entry,
                        sl=req.sl,
                        tp=req.tp,
                        comment=req.comment,
                        open_time=quote.time,
                        margin=margin,
                        result=result,
                    )
                )
        else:
            order = _Ord(
                id=oid,
                client_id=req.client_id,
                symbol=req.symbol,
                buy=buy,
                kind=req.order_type,
                volume=volume,
                price=entry,
                sl=req.sl,
                tp=req.tp,
                comment=req.comment,
                open_time=quote.time,
            )
            self._orders[oid] = order
            self._open_by_client[req.client_id] = oid
            self._index_order(st, order)
            code, name, reason = _ok(codes.PLACED)
            result = BrokerOrderResult(
                status="accepted",
                client_id=req.client_id,
                order_id=oid,
                volume=volume,
                broker_code=code,
                broker_code_name=name,
                reason=reason,
            )
            if self.journal is not None:
                self.journal.append(
                    PaperOrderPlaced(
                        id="",
                        ts=_ns(quote.time),
                        order_id=oid,
                        client_id=req.client_id,
                        symbol=req.symbol,
                        side=req.side,
                        order_type=req.order_type,
                        volume=volume,
                        price=entry,
                        sl=req.sl,
                        tp=req.tp,
                        comment=req.comment,
                        open_time=quote.time,
                        result=result,
                    )
                )
        self._placed[req.client_id] = result
        return result

    def modify_position(
        self, position_id: str, sl: float | None, tp: float | None
    ) -> BrokerOrderResult:
        pos = self._position(position_id)
        st = self._sym_for_trade(pos.symbol)
        quote = self.last_quote(pos.symbol)
        new_sl = pos.sl if sl is None else sl
        new_tp = pos.tp if tp is None else tp
        check_stops(pos.symbol, pos.buy, quote.bid if pos.buy else quote.ask, new_sl, new_tp)
        if new_sl == pos.sl and new_tp == pos.tp:
            return self._result(
                "accepted", codes.NO_CHANGES, client_id=pos.client_id, position_id=pos.id
            )
        pos.sl, pos.tp = new_sl, new_tp
        pos.gen += 1
        self._index_position(st, pos)
        if self.journal is not None:
            self.journal.append(
                PaperPositionModified(
                    id="", ts=_ns(quote.time), position_id=pos.id, sl=new_sl, tp=new_tp
                )
            )
        return self._result("accepted", codes.DONE, client_id=pos.client_id, position_id=pos.id)

    def close_position(self, position_id: str, volume: float | None = None) -> BrokerOrderResult:
        pos = self._position(position_id)
        st = self._sym_for_trade(pos.symbol)
        quote = self.last_quote(pos.symbol)
        if volume is None:
            close_volume = pos.volume
        else:
            close_volume = check_volume(st.paper.spec, volume)
            if close_volume > pos.volume + _EPS:
                raise reject(
                    codes.INVALID_CLOSE_VOLUME,
                    f"close volume {volume} exceeds position {position_id}'s volume {pos.volume}",
                )
        price = quote.bid if pos.buy else quote.ask
        deal_id = self._new_id()
        profit = self._close(
            st,
            pos,
            close_volume,
            price,
            "close" if close_volume >= pos.volume - _EPS else "partial",
            quote.time,
            deal_id=deal_id,
        )
        return self._result(
            "filled",
            codes.DONE,
            client_id=pos.client_id,
            order_id=deal_id,
            position_id=pos.id,
            fill_price=price,
            volume=close_volume,
            profit=profit,
        )

    def cancel_order(self, order_id: str) -> BrokerOrderResult:
        order = self._order(order_id)
        del self._orders[order_id]
        self._open_by_client.pop(order.client_id, None)
        if self.journal is not None:
            self.journal.append(
                PaperOrderCancelled(
                    id="",
                    ts=0,
                    order_id=order_id,
                    reason="cancelled by request",
                    client_id=order.client_id,
                )
            )
        return self._result("accepted", codes.DONE, client_id=order.client_id, order_id=order_id)

    def modify_order(
        self, order_id: str, price: float, sl: float | None = None, tp: float | None = None
    ) -> BrokerOrderResult:
        order = self._order(order_id)
        st = self._sym_for_trade(order.symbol)
        quote = self.last_quote(order.symbol)
        price = round(price, st.paper.spec.digits)
        new_sl = order.sl if sl is None else sl
        new_tp = order.tp if tp is None else tp
        check_pending_price(order.symbol, order.buy, order.kind, price, quote)
        check_stops(order.symbol, order.buy, price, new_sl, new_tp)
        if (price, new_sl, new_tp) == (order.price, order.sl, order.tp):
            return self._result(
                "accepted", codes.NO_CHANGES, client_id=order.client_id, order_id=order_id
            )
        order.price, order.sl, order.tp = price, new_sl, new_tp
        order.gen += 1
        self._index_order(st, order)
        if self.journal is not None:
            self.journal.append(
                PaperOrderModified(
                    id="", ts=_ns(quote.time), order_id=order_id, price=price, sl=new_sl, tp=new_tp
                )
            )
        return self._result("accepted", codes.DONE, client_id=order.client_id, order_id=order_id)

    # ---- reading --------------------------------------------------------------------

    def positions(self) -> list[Position]:
        return [self._as_position(p) for p in self._positions.values()]

    def orders(self) -> list[PendingOrder]:
        return [self._as_order(o) for o in self._orders.values()]

    def find(self, client_id: str) -> Position | PendingOrder | None:
        target = self._open_by_client.get(client_id)
        if target is None:
            return None
        if target in self._positions:
            return self._as_position(self._positions[target])
        if target in self._orders:
            return self._as_order(self._orders[target])
        return None

    def spec(self, symbol: str) -> SymbolSpec:
        st = self._sym(symbol)
        spec = st.paper.spec
        tick_value = spec.point * spec.contract_size * self._conversion(st.paper.profit_currency)
        return msgspec.structs.replace(spec, tick_value=tick_value)

    def equity(self) -> float:
        equity = self.balance
        for st in self._syms.values():
            if (st.buy_vol or st.sell_vol) and st.quote is not None:
                floating = (st.quote.bid * st.buy_vol - st.buy_notional) + (
                    st.sell_notional - st.quote.ask * st.sell_vol
                )
                equity += (
                    floating
                    * st.paper.spec.contract_size
                    * self._conversion(st.paper.profit_currency)
                )
        return equity

    def margin_free(self) -> float:
        return self.equity() - self._used_margin

    def account(self) -> AccountInfo:
        equity = self.equity()
        return AccountInfo(
            balance=round(self.balance, 2),
            equity=round(equity, 2),
            currency=self.currency,
            margin=round(self._used_margin, 2),
            margin_free=round(equity - self._used_margin, 2),
            leverage=self.leverage,
        )

    def trigger_symbols(self) -> list[str]:
        """Symbols on which a quote may fire something (stops, targets, pending orders)."""
        return [
            name
            for name, st in self._syms.items()
            if st.below_bid or st.above_bid or st.below_ask or st.above_ask
        ]

    def trigger_levels(
        self, symbol: str
    ) -> tuple[float | None, float | None, float | None, float | None]:
        """The nearest trigger levels on `symbol`, None where nothing waits:
        (highest level that fires when the bid falls to it, lowest that fires when the
        bid rises to it, the same two for the ask). A quote that crosses none of them
        fires nothing here (`apply_quote` pops exactly the entries these tops bound).

        A level may belong to a stale entry (a target since modified, closed or
        cancelled): that only errs on the safe side; a quote crossing it pops it and
        fires nothing, and the next call gives the level behind it."""
        st = self._syms[symbol]
        return (
            -st.below_bid[0][0] if st.below_bid else None,
            st.above_bid[0][0] if st.above_bid else None,
            -st.below_ask[0][0] if st.below_ask else None,
            st.above_ask[0][0] if st.above_ask else None,
        )

    def quote_time(self, symbol: str) -> float | None:
        st = self._syms.get(symbol)
        return None if st is None or st.quote is None else st.quote.time

    def current_quote(self, symbol: str) -> Quote | None:
        """The last quote applied for `symbol` (None before the first, or if unknown)."""
        st = self._syms.get(symbol)
        return None if st is None else st.quote

    def drain_journal(self) -> list[PaperFact]:
        """The facts recorded since the last drain (empty without a journal)."""
        if not self.journal:
            return []
        facts, self.journal = self.journal, []
        return facts

    # ---- restoring from facts -------------------------------------------------------

    def restore(self, fact: PaperFact) -> None:
        """Fold one stored fact into the book: no checks, no journal entry."""
        if isinstance(fact, PaperAccountOpened):
            self.balance, self.currency, self.leverage = fact.balance, fact.currency, fact.leverage
        elif isinstance(fact, PaperPositionOpened):
            self._open_position(
                fact.position_id,
                fact.client_id,
                self._sym(fact.symbol),
                fact.side == "buy",
                fact.volume,
                fact.open_price,
                fact.sl,
                fact.tp,
                fact.comment,
                fact.open_time,
                fact.margin,
            )
            if fact.client_id is not None:
                self._placed[fact.client_id] = fact.result
            self._saw_id(fact.position_id)
        elif isinstance(fact, PaperOrderPlaced):
            order = _Ord(
                id=fact.order_id,
                client_id=fact.client_id,
                symbol=fact.symbol,
                buy=fact.side == "buy",
                kind="limit" if fact.order_type == "limit" else "stop",
                volume=fact.volume,
                price=fact.price,
                sl=fact.sl,
                tp=fact.tp,
                comment=fact.comment,
                open_time=fact.open_time,
            )
            self._orders[order.id] = order
            self._open_by_client[order.client_id] = order.id
            self._index_order(self._sym(fact.symbol), order)
            self._placed[fact.client_id] = fact.result
            self._saw_id(fact.order_id)
        elif isinstance(fact, PaperOrderFilled):
            order = self._orders.pop(fact.order_id)
            self._open_position(
                order.id,
                order.client_id,
                self._syms[order.symbol],
                order.buy,
                order.volume,
                fact.price,
                order.sl,
                order.tp,
                order.comment,
                fact.time,
                fact.margin,
            )
        elif isinstance(fact, PaperOrderCancelled):
            cancelled = self._orders.pop(fact.order_id, None)
            if cancelled is not None:
                self._open_by_client.pop(cancelled.client_id, None)
        elif isinstance(fact, PaperOrderModified):
            order = self._orders[fact.order_id]
            order.price, order.sl, order.tp = fact.price, fact.sl, fact.tp
            order.gen += 1
            self._index_order(self._syms[order.symbol], order)
        elif isinstance(fact, PaperPositionModified):
            pos = self._positions[fact.position_id]
            pos.sl, pos.tp = fact.sl, fact.tp
            pos.gen += 1
            self._index_position(self._syms[pos.symbol], pos)
        elif isinstance(fact, PaperPositionClosed):
            pos = self._positions[fact.position_id]
            self._close(
                self._syms[pos.symbol],
                pos,
                fact.volume,
                fact.price,
                fact.reason,
                fact.time,
                profit=fact.profit,
            )
            if fact.close_order_id is not None:
                self._saw_id(fact.close_order_id)

    def _saw_id(self, value: str) -> None:
        if value.isdigit():
            self._next_id = max(self._next_id, int(value))

    # ---- internals ------------------------------------------------------------------

    def canonical(self, symbol: str) -> str:
        """The book's name for a broker-style symbol: like many MT5 brokers, the paper
        broker also answers to suffixed names (XAUUSD.m, XAUUSDm, EURUSD.pro)."""
        if symbol in self._syms:
            return symbol
        for candidate in (symbol.split(".")[0], symbol.rstrip("abcdefghijklmnopqrstuvwxyz")):
            if candidate.upper() in self._syms:
                return candidate.upper()
        return symbol

    def _sym(self, symbol: str) -> _Sym:
        st = self._syms.get(self.canonical(symbol))
        if st is None:
            raise reject(codes.INVALID, f"symbol {symbol} is not offered by this broker")
        return st

    def _sym_for_trade(self, symbol: str) -> _Sym:
        st = self._sym(symbol)
        if not st.open:
            raise reject(codes.MARKET_CLOSED, f"the market for {symbol} is closed")
        return st

    def _position(self, position_id: str) -> _Pos:
        pos = self._positions.get(position_id)
        if pos is None:
            raise reject(
                codes.POSITION_NOT_FOUND, f"position {position_id} does not exist (or is closed)"
            )
        return pos

    def _order(self, order_id: str) -> _Ord:
        order = self._orders.get(order_id)
        if order is None:
            raise reject(codes.ORDER_NOT_FOUND, f"pending order {order_id} does not exist")
        return order

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _result(
        self, status: Literal["accepted", "filled"], code: int, **kw: object
    ) -> BrokerOrderResult:
        numeric, name, reason = _ok(code)
        return BrokerOrderResult(
            status=status,
            broker_code=numeric,
            broker_code_name=name,
            reason=reason,
            **kw,  # type: ignore[arg-type]
        )

    def _conversion(self, currency: str) -> float:
        """Multiplier from `currency` to the account currency, from live quotes."""
        if currency == self.currency:
            return 1.0
        direct = self._syms.get(currency + self.currency)
        if direct is not None and direct.quote is not None:
            return (direct.quote.bid + direct.quote.ask) / 2
        inverse = self._syms.get(self.currency + currency)
        if inverse is not None and inverse.quote is not None:
            return 2 / (inverse.quote.bid + inverse.quote.ask)
        return 1.0

    def _margin(self, st: _Sym, volume: float, price: float) -> float:
        notional = volume * st.paper.spec.contract_size * price
        return notional * self._conversion(st.paper.profit_currency) / self.leverage

    def _open_position(
        self,
        pid: str,
        client_id: str | None,
        st: _Sym,
        buy: bool,
        volume: float,
        price: float,
        sl: float | None,
        tp: float | None,
        comment: str | None,
        now: float,
        margin: float,
    ) -> _Pos:
        pos = _Pos(
            id=pid,
            client_id=client_id,
            symbol=st.paper.spec.symbol,
            buy=buy,
            volume=volume,
            open_price=price,
            sl=sl,
            tp=tp,
            comment=comment,
            open_time=now,
            margin=margin,
        )
        self._positions[pid] = pos
        if client_id is not None:
            self._open_by_client[client_id] = pid
        self._used_margin += margin
        if buy:
            st.buy_vol += volume
            st.buy_notional += volume * price
        else:
            st.sell_vol += volume
            st.sell_notional += volume * price
        self._index_position(st, pos)
        return pos

    def _close(
        self,
        st: _Sym,
        pos: _Pos,
        volume: float,
        price: float,
        reason: CloseReason,
        now: float,
        *,
        deal_id: str | None = None,
        profit: float | None = None,
    ) -> float:
        if profit is None:  # restoring passes the recorded profit: conversions move with quotes
            spec = st.paper.spec
            sign = 1.0 if pos.buy else -1.0
            profit = (price - pos.open_price) * sign * volume * spec.contract_size
            profit = round(profit * self._conversion(st.paper.profit_currency), 2)
            if self.journal is not None:
                self.journal.append(
                    PaperPositionClosed(
                        id="",
                        ts=_ns(now),
                        position_id=pos.id,
                        volume=volume,
                        price=price,
                        profit=profit,
                        reason=reason,
                        time=now,
                        close_order_id=deal_id,
                        client_id=pos.client_id,
                        remaining=max(round(pos.volume - volume, 8), 0.0),
                    )
                )
        self.balance += profit
        if pos.buy:
            st.buy_vol -= volume
            st.buy_notional -= volume * pos.open_price
        else:
            st.sell_vol -= volume
            st.sell_notional -= volume * pos.open_price
        remaining = round(pos.volume - volume, 8)
        released = pos.margin * (volume / pos.volume)
        self._used_margin -= released
        pos.margin -= released
        if remaining <= _EPS:
            del self._positions[pos.id]
            if pos.client_id is not None:
                self._open_by_client.pop(pos.client_id, None)
            if not self._positions:  # clear float drift once flat
                self._used_margin = 0.0
            if st.buy_vol <= _EPS and st.sell_vol <= _EPS:
                st.buy_vol = st.buy_notional = st.sell_vol = st.sell_notional = 0.0
        else:
            pos.volume = remaining
        self.history.append(
            ClosedTrade(
                position_id=pos.id,
                client_id=pos.client_id,
                symbol=pos.symbol,
                side="buy" if pos.buy else "sell",
                volume=volume,
                open_price=pos.open_price,
                close_price=price,
                profit=profit,
                reason=reason,
                time=now,
            )
        )
        return profit

    def _push(self, heap: list[_Entry], key: float, kind: str, target: str, gen: int) -> None:
        self._seq += 1
        heapq.heappush(heap, (key, self._seq, kind, target, gen))

    def _index_position(self, st: _Sym, pos: _Pos) -> None:
        if pos.buy:  # a buy closes at the bid
            if pos.sl is not None:
                self._push(st.below_bid, -pos.sl, "sl", pos.id, pos.gen)
            if pos.tp is not None:
                self._push(st.above_bid, pos.tp, "tp", pos.id, pos.gen)
        else:  # a sell closes at the ask
            if pos.sl is not None:
                self._push(st.above_ask, pos.sl, "sl", pos.id, pos.gen)
            if pos.tp is not None:
                self._push(st.below_ask, -pos.tp, "tp", pos.id, pos.gen)

    def _index_order(self, st: _Sym, order: _Ord) -> None:
        below = (order.kind == "limit") == order.buy
        heap = (
            (st.below_ask if below else st.above_ask)
            if order.buy
            else (st.below_bid if below else st.above_bid)
        )
        self._push(heap, -order.price if below else order.price, "ord", order.id, order.gen)

    def _fire(self, kind: str, target: str, gen: int, quote: Quote) -> PaperEvent | None:
        if kind == "ord":
            order = self._orders.get(target)
            if order is None or order.gen != gen:
                return None
            return self._fill_order(order, quote)
        pos = self._positions.get(target)
        if pos is None or pos.gen != gen:
            return None
        st = self._syms[pos.symbol]
        price = quote.bid if pos.buy else quote.ask
        volume = pos.volume
        hit: Literal["stop_loss", "take_profit"] = "stop_loss" if kind == "sl" else "take_profit"
        profit = self._close(st, pos, volume, price, hit, quote.time)
        level = pos.sl if kind == "sl" else pos.tp
        return PaperEvent(
            kind=hit,
            symbol=pos.symbol,
            client_id=pos.client_id,
            order_id=None,
            position_id=pos.id,
            price=price,
            volume=volume,
            profit=profit,
            time=quote.time,
            reason=f"{hit.replace('_', ' ')} {level} reached",
        )

    def _fill_order(self, order: _Ord, quote: Quote) -> PaperEvent:
        st = self._syms[order.symbol]
        del self._orders[order.id]
        price = quote.ask if order.buy else quote.bid
        margin = self._margin(st, order.volume, price)
        common = {
            "symbol": order.symbol,
            "client_id": order.client_id,
            "order_id": order.id,
            "price": price,
            "volume": order.volume,
            "time": quote.time,
        }
        if margin > self.margin_free() + _EPS:
            self._open_by_client.pop(order.client_id, None)
            if self.journal is not None:
                self.journal.append(
                    PaperOrderCancelled(
                        id="",
                        ts=_ns(quote.time),
                        order_id=order.id,
                        reason=codes.describe(codes.NO_MONEY),
                        time=quote.time,
                        client_id=order.client_id,
                        by_broker=True,
                    )
                )
            return PaperEvent(
                kind="order_cancelled",
                position_id=None,
                profit=None,
                reason=codes.describe(codes.NO_MONEY),
                **common,  # type: ignore[arg-type]
            )
        self._open_position(
            order.id,
            order.client_id,
            st,
            order.buy,
            order.volume,
            price,
            order.sl,
            order.tp,
            order.comment,
            quote.time,
            margin,
        )
        if self.journal is not None:
            self.journal.append(
                PaperOrderFilled(
                    id="",
                    ts=_ns(quote.time),
                    order_id=order.id,
                    price=price,
                    margin=margin,
                    time=quote.time,
                    client_id=order.client_id,
                    volume=order.volume,
                )
            )
        return PaperEvent(
            kind="order_filled",
            position_id=order.id,
            profit=None,
            reason=f"{'buy' if order.buy else 'sell'} {order.kind} {order.price} reached",
            **common,  # type: ignore[arg-type]
        )

    def _as_position(self, p: _Pos) -> Position:
        st = self._syms[p.symbol]
        current = None
        profit = 0.0
        if st.quote is not None:
            current = st.quote.bid if p.buy else st.quote.ask
            sign = 1.0 if p.buy else -1.0
            profit = round(
                (current - p.open_price)
                * sign
                * p.volume
                * st.paper.spec.contract_size
                * self._conversion(st.paper.profit_currency),
                2,
            )
        return Position(
            position_id=p.id,
            client_id=p.client_id,
            symbol=p.symbol,
            side="buy" if p.buy else "sell",
            volume=p.volume,
            open_price=p.open_price,
            sl=p.sl,
            tp=p.tp,
            current_price=current,
            profit=profit,
            comment=p.comment,
            open_time=p.open_time,
        )

    @staticmethod
    def _as_order(o: _Ord) -> PendingOrder:
        return PendingOrder(
            order_id=o.id,
            client_id=o.client_id,
            symbol=o.symbol,
            side="buy" if o.buy else "sell",
            order_type=o.kind,
            volume=o.volume,
            price=o.price,
            sl=o.sl,
            tp=o.tp,
            comment=o.comment,
            open_time=o.open_time,
        )
