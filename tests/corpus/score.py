#!/usr/bin/env python3
# Provenance: copied unchanged from shared/signals/score.py, the scorer handed to the project
# with the real-message corpus (dev.jsonl here; see README.md beside this file).
# ruff: noqa
# fmt: off
"""Score a signal parser against a labelled corpus of real channel messages.

Usage:
    score.py CORPUS.jsonl -- COMMAND [ARG ...]

COMMAND reads JSON lines {"id", "text"} on stdin and writes one JSON line per
input on stdout: {"id", "kind", ...fields} as described in README.md beside
this file. Prints a table by kind, the failures (with --show N), and a last
line "exact: P% (n/N)".
"""
import json
import subprocess
import sys
from collections import Counter, defaultdict

OPEN_FIELDS = ("symbol", "side", "order_type", "entry", "entry_range", "sl", "tps", "sl_pips", "tp_pips")
CLOSE_WHICH = {"all", "partial", "buy", "sell"}


def same_number(a, b):
    if a is None or b is None:
        return a is None and b is None
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def same_value(a, b):
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(b, (int, float)) or isinstance(a, (int, float)):
        return same_number(a, b)
    if isinstance(b, str) and isinstance(a, str):
        return a.strip().upper() == b.strip().upper()
    return a == b


def field_errors(case, got):
    """Names of the fields that differ; empty means the case is right."""
    exp, kind = case["expected"], case["kind"]
    if got.get("kind") != kind:
        if case.get("accept_reject") and got.get("kind") == "rejected":
            return []
        return ["kind"]
    wrong = []
    if kind == "open":
        for f in OPEN_FIELDS:
            e, g = exp.get(f), got.get(f)
            if f == "tps":
                e, g = e or [], g or []
            if f == "symbol" and e is None:
                continue  # the message names no symbol: the channel default decides
            if not same_value(g, e):
                wrong.append(f)
    elif kind == "modify":
        if got.get("action") != exp.get("action"):
            wrong.append("action")
        elif exp.get("value") is not None and not same_value(got.get("value"), exp["value"]):
            wrong.append("value")
        if exp.get("symbol") and not same_value(got.get("symbol"), exp["symbol"]):
            wrong.append("symbol")
    elif kind == "close":
        e_which = exp.get("which") if exp.get("which") in CLOSE_WHICH else "other"
        g_which = got.get("which") if got.get("which") in CLOSE_WHICH else "other"
        if e_which != g_which:
            wrong.append("which")
        if exp.get("fraction") is not None and not same_number(got.get("fraction"), exp["fraction"]):
            wrong.append("fraction")
        if exp.get("symbol") and not same_value(got.get("symbol"), exp["symbol"]):
            wrong.append("symbol")
    elif kind == "cancel":
        if exp.get("symbol") and not same_value(got.get("symbol"), exp["symbol"]):
            wrong.append("symbol")
    return wrong


def main(argv):
    show = 0
    if "--show" in argv:
        i = argv.index("--show")
        show = int(argv[i + 1])
        del argv[i:i + 2]
    if "--" not in argv or argv.index("--") != 1:
        sys.exit(__doc__)
    cases = [json.loads(line) for line in open(argv[0], encoding="utf-8") if line.strip()]
    command = argv[2:]
    stdin = "".join(json.dumps({"id": c["id"], "text": c["text"]}, ensure_ascii=False) + "\n" for c in cases)
    run = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
        print(f"exact: 0.0% (0/{len(cases)}) parser exited {run.returncode}")
        return 1
    answers = {}
    for line in run.stdout.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
                answers[row.get("id")] = row
            except json.JSONDecodeError:
                pass
    by_kind, right_kind, field_miss, failures = Counter(), Counter(), Counter(), []
    by_split = defaultdict(lambda: [0, 0])
    for case in cases:
        got = answers.get(case["id"], {"kind": "missing"})
        wrong = field_errors(case, got)
        by_kind[case["kind"]] += 1
        split = case.get("split", "all")
        by_split[split][1] += 1
        if not wrong:
            right_kind[case["kind"]] += 1
            by_split[split][0] += 1
        else:
            field_miss.update(wrong)
            failures.append((case, got, wrong))
    total, right = len(cases), sum(right_kind.values())
    print(f"{'kind':8} {'right':>6} {'cases':>6}")
    for kind in sorted(by_kind):
        print(f"{kind:8} {right_kind[kind]:>6} {by_kind[kind]:>6}")
    if len(by_split) > 1:
        for split, (r, n) in sorted(by_split.items()):
            print(f"split {split}: {100 * r / n:.1f}% ({r}/{n})")
    print("fields wrong:", ", ".join(f"{k} {v}" for k, v in field_miss.most_common()) or "none")
    for case, got, wrong in failures[:show]:
        print(f"--- {case['id']} wrong: {', '.join(wrong)}")
        print("text:", case["text"].replace("\n", " / ")[:300])
        print("expected:", json.dumps({"kind": case["kind"], **case["expected"]}, ensure_ascii=False))
        print("got:     ", json.dumps(got, ensure_ascii=False)[:400])
    print(f"exact: {100 * right / total:.1f}% ({right}/{total})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
