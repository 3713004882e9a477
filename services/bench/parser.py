"""Signal-parser throughput on one core: the corpus texts parsed in a loop.

    python -m services.bench.parser   # prints one JSON object

Reports messages per second, the p50/p99 latency of one `parse` call and
the corpus exact-match rate (the scorer's field-by-field comparison), so a
speed-up that breaks parsing shows in the same line.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from services.ingest.parser import parse, to_public

_CORPUS = Path(__file__).resolve().parents[2] / "tests" / "corpus"


def _cases() -> list[dict[str, Any]]:
    with open(_CORPUS / "dev.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _exact_pct(cases: list[dict[str, Any]]) -> float:
    spec = importlib.util.spec_from_file_location("corpus_score", _CORPUS / "score.py")
    if spec is None or spec.loader is None:
        return float("nan")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    right = sum(1 for c in cases if not score.field_errors(c, to_public(parse(c["text"]))))
    return round(100 * right / len(cases), 1)


def run(seconds: float = 3.0) -> dict[str, Any]:
    """Parse the corpus texts for about `seconds`; throughput and latency figures."""
    cases = _cases()
    texts = [c["text"] for c in cases]
    for text in texts:  # warm-up: regex caches, imports
        parse(text)
    clock = time.perf_counter_ns
    samples: list[int] = []
    count = 0
    started = clock()
    deadline = started + int(seconds * 1e9)
    while clock() < deadline:
        for text in texts:
            t0 = clock()
            parse(text)
            samples.append(clock() - t0)
        count += len(texts)
    elapsed = (clock() - started) / 1e9
    samples.sort()
    return {
        "name": "parser",
        "messages_per_s": round(count / elapsed),
        "us_per_message_p50": round(samples[len(samples) // 2] / 1000, 1),
        "p99": round(samples[int(len(samples) * 0.99)] / 1000, 1),
        "corpus_exact_pct": _exact_pct(cases),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
