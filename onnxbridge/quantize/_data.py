"""What quantization measures against: the parent's reference, and calibration samples.

Recipes and measurements take a :class:`Reference` (an explicit, immutable view of the
parent's export sample and source model) instead of reaching into an artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.checks import _validation
from onnxbridge.core._errors import InputError
from onnxbridge.core._types import Feeds, Reference
from onnxbridge.graph import _graph
from onnxbridge.running._feeds import as_feeds

if TYPE_CHECKING:
    import onnx

__all__ = ["check_feeds", "samples", "text_rows"]

_BATCH_ROWS = 16  # a batched calibration array is measured in slices of this many rows


def samples(model: onnx.ModelProto, reference: Reference, calibration: Any) -> list[Feeds]:
    """Inputs to calibrate and measure on: the calibration data, else the sample and its variants.

    Raises:
        InputError: Calibration data whose structure, names, rank, fixed sizes or dtype do
            not fit the model, naming the input, what was expected and what arrived.
    """
    names = [v.name for v in _graph.inputs(model)]
    dtypes = _graph.input_dtypes(model)
    if calibration is not None:
        if _is_batched(calibration):
            batched = check_feeds(model, as_feeds(calibration, names, "calibration", dtypes), "calibration")
            rows = min((len(v) for v in batched.values() if v.ndim), default=1)
            if rows == 0:
                raise InputError("calibration has 0 rows; pass at least one sample shaped like the export sample.")
            step = _BATCH_ROWS if _batch_dynamic(names, reference.dynamic_axes) else rows
            return [{k: v[i : i + step] for k, v in batched.items()} for i in range(0, rows, step)]
        if isinstance(calibration, (str, bytes, Mapping)) or not hasattr(calibration, "__iter__"):
            raise InputError(
                f"calibration must be an iterable of samples (dicts by input name, lists in input order, or arrays "
                f"for single-input models) or one batched array; got {type(calibration).__name__}. Wrap a single "
                "dict sample in a list: calibration=[sample]."
            )
        items = list(calibration)
        if not items:
            raise InputError("calibration is empty; pass at least one sample shaped like the export sample.")
        return [
            check_feeds(model, as_feeds(item, names, f"calibration[{i}]", dtypes), f"calibration[{i}]")
            for i, item in enumerate(items)
        ]
    sample = reference.feeds()
    if sample is None:
        raise InputError(
            "This artifact has no export sample to measure the quantized model on; pass calibration=[...] samples."
        )
    sample = {k: v for k, v in sample.items() if k in names}
    made = [feeds for _, feeds in _validation.variants(sample, dict(reference.dynamic_axes), list(sample))]
    text = text_rows(sample, _vocabulary(model))
    return made + ([text] if text is not None else [])


SHORT = (1, 2, 3, 5, 8, 13, 21)  # content tokens per made-up text row: very short ones first


def text_rows(sample: Feeds, vocabulary: int | None) -> Feeds | None:
    """A batch of token rows of varied lengths made from a text sample, for measuring without data.

    Users' inputs are often much shorter than an export sample (a greeting, a title), and int8
    error on short inputs is what the sample's two sentences do not show. Each row keeps the
    sample's first token and its last real one (``[CLS]`` ... ``[SEP]``), with content tokens
    taken from the sample's own rows in turn and, past them, drawn from the vocabulary (the
    embedding table's rows). ``None`` unless the sample is ``input_ids`` and ``attention_mask``
    (and ``token_type_ids``) of rank 2.
    """
    ids, mask = sample.get("input_ids"), sample.get("attention_mask")
    if ids is None or mask is None or ids.ndim != 2 or mask.shape != ids.shape or not set(sample) <= TEXT_INPUTS:
        return None
    real = [row[m.astype(bool)] for row, m in zip(ids, mask, strict=True)]
    real = [r for r in real if len(r) >= 2]
    if not real:
        return None
    first, last = real[0][0], real[0][-1]
    content = np.concatenate([r[1:-1] for r in real])
    rng = np.random.default_rng(0)
    rows = []
    for count in SHORT:
        own = content[np.arange(count) % len(content)] if len(content) else np.zeros(0, ids.dtype)
        if count > len(content) and vocabulary:  # past the sample's words: the vocabulary's
            own[len(content) :] = rng.integers(min(1000, vocabulary // 2), vocabulary, count - len(content))
        rows.append(np.concatenate([[first], own, [last]]).astype(ids.dtype))
    width = max(len(r) for r in rows)
    pad = ids[~mask.astype(bool)][0] if (~mask.astype(bool)).any() else np.zeros((), ids.dtype)
    made = {
        "input_ids": np.stack([np.concatenate([r, np.full(width - len(r), pad, ids.dtype)]) for r in rows]),
        "attention_mask": np.stack([(np.arange(width) < len(r)).astype(mask.dtype) for r in rows]),
    }
    if "token_type_ids" in sample:
        made["token_type_ids"] = np.zeros_like(made["input_ids"], dtype=sample["token_type_ids"].dtype)
    return made


TEXT_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


def _vocabulary(model: onnx.ModelProto) -> int | None:
    """Rows of the token embedding table (the largest 2-D float initializer a Gather reads), if any."""
    from onnx import TensorProto

    tables = {
        i.name: int(i.dims[0]) for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2
    }
    read = [tables[n.input[0]] for n in model.graph.node if n.op_type == "Gather" and n.input and n.input[0] in tables]
    return max(read) if read else None


def check_feeds(model: onnx.ModelProto, feeds: Feeds, where: str) -> Feeds:
    """``feeds`` checked against the graph's inputs and cast to their dtypes (same kind of number only)."""
    expected = {v.name: v for v in _graph.inputs(model)}
    dtypes = _graph.input_dtypes(model)
    missing = sorted(set(expected) - set(feeds))
    if missing:
        raise InputError(f"{where} lacks inputs {missing}; each sample must have the model's inputs {list(expected)}.")
    out: Feeds = {}
    for name, value in expected.items():
        array = np.asarray(feeds[name])
        dims = _dims(value)
        if dims is not None:
            if array.ndim != len(dims):
                raise InputError(
                    f"{where}[{name!r}] has rank {array.ndim} (shape {array.shape}); the model's input {name!r} has "
                    f"rank {len(dims)} ({_shape_text(dims)}). Shape each calibration sample like the export sample."
                )
            for axis, (want, got) in enumerate(zip(dims, array.shape, strict=True)):
                if isinstance(want, int) and want != got:
                    raise InputError(
                        f"{where}[{name!r}] has size {got} on axis {axis}; the model's input {name!r} is fixed to "
                        f"{want} there ({_shape_text(dims)}). Re-export with that axis in dynamic_axes, or resize."
                    )
        want_dtype = dtypes.get(name)
        if want_dtype is not None and array.dtype != want_dtype:
            same_kind = (array.dtype.kind in "iu" and want_dtype.kind in "iu") or array.dtype.kind == want_dtype.kind
            int_to_float = array.dtype.kind in "iub" and want_dtype.kind == "f"
            if not (same_kind or int_to_float):
                raise InputError(
                    f"{where}[{name!r}] has dtype {array.dtype}; the model's input {name!r} takes {want_dtype}. "
                    "Pass values of that type."
                )
            array = array.astype(want_dtype)
        out[name] = array
    return out


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def _shape_text(dims: list[int | str]) -> str:
    return "[" + ", ".join(map(str, dims)) + "]"


def _is_batched(value: Any) -> bool:
    module = type(value).__module__.split(".")[0]
    return (
        isinstance(value, np.ndarray)
        or (module in ("torch", "tensorflow") and hasattr(value, "shape"))
        or (module == "pandas" and hasattr(value, "columns"))
    )


def _batch_dynamic(names: list[str], axes: Mapping[str, Mapping[int, str]]) -> bool:
    return all(0 in axes.get(name, {}) for name in names)
