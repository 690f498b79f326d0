"""Command-line values: ``--shape`` parsed, random inputs that fit a session, latency statistics."""

from __future__ import annotations

import statistics

import numpy as np

import onnxbridge as ob


class UsageError(Exception):
    """A bad command-line value (exit status 2)."""


def parse_shapes(values: list[str] | None) -> dict[str, list[int]]:
    shapes = {}
    for item in values or []:
        name, sep, dims = item.partition("=")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            sep = ""
        if not sep or not name or any(d <= 0 for d in shape):
            raise UsageError(f"--shape {item!r}: expected name=DIMxDIMx..., e.g. input=1x3x224x224.")
        shapes[name] = shape
    return shapes


def random_inputs(sess: ob.Session, batch: int, shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs that respect the declared shapes and dtypes; symbolic dims from ``shapes`` or ``batch``."""
    rng = np.random.default_rng(seed)
    unknown = sorted(set(shapes) - set(sess.input_names))
    if unknown:
        raise UsageError(f"--shape names {unknown}, which are not inputs; the inputs are {list(sess.input_names)}.")
    feeds = {}
    for spec in sess.inputs:
        if spec.name in shapes:
            shape = shapes[spec.name]
            if len(shape) != len(spec.shape) or any(
                isinstance(d, int) and d != s for d, s in zip(spec.shape, shape, strict=False)
            ):
                raise UsageError(
                    f"--shape {spec.name}={'x'.join(map(str, shape))} does not fit the declared {list(spec.shape)}."
                )
        else:
            shape = [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(spec.shape)]
        dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f":
            feeds[spec.name] = rng.random(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) > 0.5
        else:
            feeds[spec.name] = np.full(shape, "a", dtype=object)
    return feeds


def latency_stats(times: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1e3

    # Throughput from the median run: one slow outlier (a GC pause) should not define it.
    return {
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "throughput_per_s": batch / statistics.median(times),
    }


def parse_tolerance(values: list[str] | None) -> dict[str, float] | None:
    """``--tolerance key=value`` options as ``{key: value}``; ``None`` when none were given."""
    if not values:
        return None
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        try:
            parsed[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--tolerance {item!r}: expected key=value, e.g. cosine=0.99.")
    return parsed
