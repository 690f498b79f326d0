"""Interleaved A/B timing: medians over rounds, measured side by side in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """Per-call medians of two callables and the median of their per-round ratio."""

    a_seconds: float
    b_seconds: float
    ratio: float  # median over rounds of time(a) / time(b)


def compare(a: Callable[[], object], b: Callable[[], object], *, rounds: int = 21, calls: int = 200) -> Comparison:
    """Time ``a`` and ``b`` in alternating blocks of ``calls`` calls, ``rounds`` times."""
    for fn in (a, b):  # warm up
        for _ in range(max(3, calls // 10)):
            fn()
    a_times, b_times, ratios = [], [], []
    for i in range(rounds):
        order = (a, b) if i % 2 == 0 else (b, a)  # alternate who goes first
        measured = {}
        for fn in order:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            measured[id(fn)] = (time.perf_counter() - start) / calls
            time.sleep(0.01)  # let onnxruntime/OpenMP worker threads stop spinning
        a_times.append(measured[id(a)])
        b_times.append(measured[id(b)])
        ratios.append(measured[id(a)] / measured[id(b)])
    return Comparison(statistics.median(a_times), statistics.median(b_times), statistics.median(ratios))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
