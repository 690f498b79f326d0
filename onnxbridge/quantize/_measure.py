"""Measuring a derived model against its parent: accuracy per sample, size, latency."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.core import _timing
from onnxbridge.core._errors import OnnxBridgeError
from onnxbridge.core._types import Feeds
from onnxbridge.graph._files import model_bytes
from onnxbridge.quantize._types import OutputAccuracy
from onnxbridge.running._session import Session

if TYPE_CHECKING:
    import onnx


def session(model: onnx.ModelProto, *, threads: int | None = None) -> Session:
    """A CPU session with thread spinning off (so that interleaved timings do not skew)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return Session(model, ["cpu"], threads=threads, options=options)


def run_all(model: onnx.ModelProto | Session, samples: Sequence[Feeds]) -> list[dict[str, np.ndarray]]:
    """Outputs of ``model`` on every sample, zero where the sample's ``attention_mask`` is 0 (see :func:`masked`)."""
    sess = model if isinstance(model, Session) else session(model)
    return [masked(sess.run({k: v for k, v in feeds.items() if k in sess.input_names}), feeds) for feeds in samples]


def masked(outputs: dict[str, np.ndarray], feeds: Feeds) -> dict[str, np.ndarray]:
    """``outputs`` with every ``[batch, sequence, ...]`` one set to 0 at padding (``attention_mask`` 0).

    What a model computes at padding is not part of its answer, and int8 error there is not the
    user's: comparing both sides with padding zeroed measures only the positions that hold tokens.
    """
    mask = feeds.get("attention_mask")
    if mask is None or np.ndim(mask) != 2 or np.all(mask):
        return outputs
    keep = np.asarray(mask).astype(bool)
    return {
        name: np.where(keep.reshape(keep.shape + (1,) * (value.ndim - 2)), value, np.zeros((), value.dtype))
        if value.ndim >= 2 and value.shape[:2] == keep.shape and value.dtype.kind == "f"
        else value
        for name, value in outputs.items()
    }


def _rows(array: np.ndarray) -> np.ndarray:
    """One row per item of the first axis (a 0-d or 1-d output is one row)."""
    a = array.astype(np.float64)
    return a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(1, -1)


def compare(
    expected: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]]
) -> list[OutputAccuracy]:
    """Accuracy of ``got`` against ``expected``, output by output, each sample on its own.

    Samples may differ in shape (dynamic batch and sequence sizes): rows are formed inside
    each sample and only their cosines are pooled.
    """
    accuracy = []
    for name in expected[0]:
        max_abs, cosines, agree, rows_seen = 0.0, [], 0, 0
        is_float = expected[0][name].dtype.kind == "f"
        scores = is_float and all(e[name].ndim == 2 and e[name].shape[1] > 1 for e in expected)
        for e, g in zip(expected, got, strict=True):
            ref, out = np.asarray(e[name]), np.asarray(g[name])
            if ref.shape != out.shape:
                max_abs = float("inf")
                continue
            if ref.size:
                diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
                max_abs = max(max_abs, float(np.nan_to_num(diff, nan=np.inf).max()))
            if is_float and ref.size:
                a, b = _rows(out), _rows(ref)
                norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
                cosines.append(np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0))
                if scores:
                    agree += int(np.sum(a.argmax(axis=1) == b.argmax(axis=1)))
                    rows_seen += len(a)
        cos = np.concatenate(cosines) if cosines else None
        accuracy.append(
            OutputAccuracy(
                name,
                max_abs,
                None if cos is None else float(np.nan_to_num(cos, nan=-1.0).mean()),
                agree / rows_seen if rows_seen else None,
                None if cos is None else float(np.nan_to_num(cos, nan=-1.0).min()),
            )
        )
    return accuracy


def measure(parent: onnx.ModelProto, child: onnx.ModelProto, samples: Sequence[Feeds]) -> list[OutputAccuracy]:
    """Compare every output of ``child`` with ``parent`` over ``samples``."""
    return compare(run_all(parent, samples), run_all(child, samples))


def meets(accuracy: Sequence[OutputAccuracy], tolerance: Mapping[str, float]) -> bool:
    """Whether every output is within ``tolerance`` (``cosine`` is checked on the worst row)."""
    for acc in accuracy:
        if "cosine" in tolerance and acc.min_cosine is not None and acc.min_cosine < tolerance["cosine"]:
            return False
        if "mean_cosine" in tolerance and acc.cosine is not None and acc.cosine < tolerance["mean_cosine"]:
            return False
        if "top1" in tolerance and acc.top1 is not None and acc.top1 < tolerance["top1"]:
            return False
        if "max_abs" in tolerance and acc.max_abs_error > tolerance["max_abs"]:
            return False
    return True


def score(accuracy: Sequence[OutputAccuracy]) -> float:
    """Lower is better: the worst cosine shortfall, else the worst absolute error."""
    cosines = [1.0 - a.min_cosine for a in accuracy if a.min_cosine is not None]
    return max(cosines) if cosines else max(a.max_abs_error for a in accuracy)


def summary(accuracy: Sequence[OutputAccuracy]) -> str:
    """One line: the figures of every output."""
    parts = []
    for a in accuracy:
        bits = [f"max abs {a.max_abs_error:.3g}"]
        if a.min_cosine is not None:
            bits.append(f"min cosine {a.min_cosine:.4f}")
        if a.top1 is not None:
            bits.append(f"top-1 {a.top1:.2%}")
        parts.append(f"{a.output}: {', '.join(bits)}")
    return "; ".join(parts)


def latency_ratio(
    parent: onnx.ModelProto | Session,
    child: onnx.ModelProto | Session,
    feeds: Feeds,
    *,
    rounds: int = 7,
    threads: int | None = 1,
) -> float | None:
    """Median over interleaved rounds of child/parent latency on CPU (``threads=None``: onnxruntime's default).

    Each round times a block of calls of each model in turn (who goes first alternates), with
    a short pause between blocks so onnxruntime's worker threads stop spinning. Returns
    ``None`` if either model cannot run ``feeds``.
    """
    sessions = [m if isinstance(m, Session) else session(m, threads=threads) for m in (parent, child)]
    inputs = [{k: v for k, v in feeds.items() if k in s.input_names} for s in sessions]
    try:
        start = time.perf_counter()
        for s, f in zip(sessions, inputs, strict=True):
            s.run(f)
        one = (time.perf_counter() - start) / 2
    except OnnxBridgeError:
        return None
    calls = max(1, min(50, round(0.02 / max(one, 1e-6))))
    (parent_session, child_session), (parent_feeds, child_feeds) = sessions, inputs
    return _timing.compare(
        lambda: child_session.run(child_feeds),
        lambda: parent_session.run(parent_feeds),
        rounds=rounds,
        calls=calls,
        warmup=0,
        pause=0.005,
    ).ratio


def model_size(model: onnx.ModelProto) -> int:
    """Bytes the model takes (see :func:`onnxbridge.graph._files.model_bytes`)."""
    return model_bytes(model)
