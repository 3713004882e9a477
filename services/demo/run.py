"""`sigrelay demo`: the whole system on the embedded defaults, 1,000 users,
a script of realistic channel traffic, and a summary. Leaves the state
directory behind for `sigrelay audit …` to explore."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec
import nats

from contracts import subjects
from contracts.channels import ChannelDirectory, ChannelInfo, load_directory, save_directory
from contracts.orders import Quote
from services.demo.observer import BusObserver, Figures
from services.demo.population import CHANNELS, create_users
from services.demo.script import build_script
from services.ingest.inject import inject
from services.runtime.settings import RuntimeSettings
from services.runtime.supervisor import AlreadyUp, Supervisor, running_supervisor

SERVICES = ("ingest", "actors", "risk", "execution", "paper", "audit")
QUOTED = ("XAUUSD", "EURUSD", "US30")


class Progress:
    """One line on stderr, rewritten in place: what the demo is doing."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def show(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / max(total, 1))
        line = f"{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if self._tty:
            self._stream.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total:
            self._stream.write(line + "\n")
        self._stream.flush()

    def note(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()


def ensure_channels(settings: RuntimeSettings) -> None:
    directory = load_directory(settings.home, settings.env)
    channels = dict(directory.channels)
    for name, symbol in CHANNELS.items():
        channels.setdefault(name, ChannelInfo(default_symbol=symbol, title=f"demo {name}"))
    save_directory(settings.home, ChannelDirectory(channels=channels), settings.env)


async def latest_prices(
    nc: Any, symbols: tuple[str, ...], within_s: float = 15.0
) -> dict[str, float]:
    prices: dict[str, float] = {}
    decoder = msgspec.json.Decoder(Quote)
    done = asyncio.Event()

    async def on_quote(msg: Any) -> None:
        quote = decoder.decode(msg.data)
        prices[quote.symbol] = round((quote.bid + quote.ask) / 2, 5)
        if all(s in prices for s in symbols):
            done.set()

    sub = await nc.subscribe(f"{subjects.PRICES}.>", cb=on_quote)
    try:
        await asyncio.wait_for(done.wait(), within_s)
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    return prices


async def settle(figures: Figures, *, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Wait until no new intent, verdict or report has arrived for `quiet_s`."""

    def total() -> int:
        return (
            sum(figures.intents.values())
            + figures.verdicts_approved
            + sum(figures.risk_rejections.values())
            + sum(figures.reports.values())
        )

    deadline = time.monotonic() + limit_s
    last, since = total(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now_total = total()
        if now_total != last:
            last, since = now_total, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def summary_lines(figures: Figures, users: int, elapsed_s: float) -> list[str]:
    reports = figures.reports
    opened = reports.get("filled", 0) + reports.get("accepted", 0)
    refusals = figures.actor_refusals + figures.risk_rejections
    latency = figures.latency()
    rows: list[tuple[str, Any]] = [
        ("users", users),
        ("channel messages", figures.raw_messages),
        ("parsed signals", ", ".join(f"{k} {v}" for k, v in sorted(figures.parsed.items()))),
        ("order intents", ", ".join(f"{k} {v}" for k, v in sorted(figures.intents.items()))),
        ("approved by risk", figures.verdicts_approved),
        ("orders placed (filled + pending)", opened),
        ("positions modified", reports.get("modified", 0)),
        ("positions closed (full or part)", reports.get("closed", 0)),
        ("orders cancelled", reports.get("cancelled", 0)),
        ("broker rejections / failures", reports.get("rejected", 0) + reports.get("failed", 0)),
        ("signal -> order latency p50", f"{latency.get('p50_ms', '-')} ms"),
        ("signal -> order latency p99", f"{latency.get('p99_ms', '-')} ms"),
        ("elapsed", f"{elapsed_s:.1f} s"),
    ]
    lines = ["", "Sigrelay demo — summary", "-" * 60]
    lines += [f"{name:<34} {value}" for name, value in rows]
    lines.append("refusals by reason (actor + risk):")
    for code, count in refusals.most_common():
        lines.append(f"  {code:<32} {count}")
    if figures.broker_rejections:
        lines.append("broker rejections by reason:")
        for reason, count in figures.broker_rejections.most_common(5):
            lines.append(f"  {reason:<58} {count}")
    return lines


async def run_demo(settings: RuntimeSettings, *, users: int = 1000) -> int:
    progress = Progress()
    other = running_supervisor(settings.home)
    if other is not None:
        progress.note(f"sigrelay is already up for {settings.home} (pid {other}); stop it first.")
        return 2
    started = time.monotonic()
    supervisor = Supervisor(settings, SERVICES)
    progress.note("starting NATS, Postgres and the services…")
    try:
        await supervisor.prepare()
    except AlreadyUp as exc:
        progress.note(f"{exc}; stop it first.")
        return 2
    ensure_channels(settings)
    supervisor.start_children()
    try:
        nc = await nats.connect(supervisor.infra.nats_url_for("admin"), name="sigrelay-demo")
        try:
            await supervisor.wait_ready(nc)
            observer = BusObserver()
            await observer.start(nc)
            outcomes = await create_users(
                nc, users, progress=lambda n: progress.show("creating users", n, users)
            )
            failed = {k: v for k, v in outcomes.items() if k not in ("ok", "user_exists")}
            if failed:
                progress.note(f"some set-up requests were refused: {failed}")
            prices = await latest_prices(nc, QUOTED)
            script = build_script(prices, base_id=int(time.time()))
            for n, line in enumerate(script, start=1):
                await inject(nc, [line], default_channel=line.channel or "gold", wait_s=10)
                progress.show("posting channel messages", n, len(script))
            await settle(observer.figures)
            await observer.stop()
            elapsed = time.monotonic() - started
            print("\n".join(summary_lines(observer.figures, users, elapsed)))
            print(f"\nstate kept in {settings.home}: try `sigrelay audit verify`.")
        finally:
            await nc.close()
    finally:
        await supervisor.shutdown()
    return 0
