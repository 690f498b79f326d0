"""Interleaved A/B timing: medians over rounds, measured side by side in one process.

Absolute times on a shared machine mean little; the ratio of two things timed in alternating
blocks does. Used by quantization's latency ratios, the demo and the benchmarks.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Comparison", "Phases", "compare", "per_call"]


@dataclass(frozen=True)
class Comparison:
    """Per-call medians of two callables and the median of their per-round ratio."""

    a_seconds: float
    b_seconds: float
    ratio: float  # median over rounds of time(a) / time(b)


def per_call(
    fn: Callable[[], object], runs: int, *, warmup: int = 1, each: Callable[[], object] | None = None
) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` untimed ones (for percentiles).

    ``each`` is called after every timed call, outside the timing (a progress bar's step).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if each is not None:
            each()
    return times


def compare(
    a: Callable[[], object],
    b: Callable[[], object],
    *,
    rounds: int = 21,
    calls: int = 200,
    warmup: int | None = None,
    pause: float = 0.01,
) -> Comparison:
    """Time ``a`` and ``b`` in alternating blocks of ``calls`` calls, ``rounds`` times.

    Who goes first alternates between rounds, and each block is followed by ``pause``
    seconds so that onnxruntime's (and OpenMP's) worker threads stop spinning before the
    other side runs. ``warmup`` calls of each first (default: a tenth of ``calls``, at least 3).
    """
    for fn in (a, b):
        for _ in range(max(3, calls // 10) if warmup is None else warmup):
            fn()
    a_times, b_times, ratios = [], [], []
    for i in range(rounds):
        spent = [0.0, 0.0]
        for j in (0, 1) if i % 2 == 0 else (1, 0):
            fn = (a, b)[j]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            spent[j] = (time.perf_counter() - start) / calls
            time.sleep(pause)
        a_times.append(spent[0])
        b_times.append(spent[1])
        ratios.append(spent[0] / spent[1])
    return Comparison(statistics.median(a_times), statistics.median(b_times), statistics.median(ratios))


class Phases:
    """Seconds spent in each named phase of one piece of work (an export), in the order first entered."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time of the ``with`` block to phase ``name`` (a phase entered twice adds up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def split(self, total: float) -> dict[str, float]:
        """Each phase's seconds, ``"other"`` for the rest of ``total``, and ``"total"``, rounded to milliseconds."""
        other = max(total - sum(self.seconds.values()), 0.0)
        return {name: round(seconds, 3) for name, seconds in {**self.seconds, "other": other, "total": total}.items()}

    @staticmethod
    def describe(split: dict[str, float]) -> str:
        """``"export took 12.3 s: torch.onnx.export 10.1 s, ..."`` for a :meth:`split`."""
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in split.items() if name != "total")
        return f"export took {split['total']:.1f} s: {parts}"
