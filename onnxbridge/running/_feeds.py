"""What users pass as model inputs, turned into named numpy arrays, or an InputError saying why not.

Dicts by input name, lists in input order, one array for a one-input model, pandas
DataFrames (one column per input), and torch tensors of every kind. Casting keeps every
value or raises: integers that would wrap and floats that would overflow are refused.
Used by :class:`~onnxbridge.Session`, validation, quantization's calibration data and the
adapters' samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxbridge.core._errors import InputError, first_line

__all__ = ["as_feeds", "as_mapping", "cast_to", "raise_names", "to_numpy"]


def as_mapping(
    inputs: Any, names: Sequence[str], dtypes: Mapping[str, np.dtype[Any] | None], label: str = ""
) -> Mapping[str, Any]:
    """Inputs by name from a dict, a DataFrame, a sequence in input order, or one array.

    ``label`` names what is being read (e.g. ``"samples[0]"``) in error messages.
    """
    where = f" in {label}" if label else ""
    if isinstance(inputs, Mapping):
        return inputs
    if type(inputs).__module__.startswith("pandas") and hasattr(inputs, "columns"):
        return _from_frame(inputs, names, dtypes)
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise InputError(
                f"Got {len(inputs)} positional inputs{where}, but the model takes {len(names)}: "
                f"{', '.join(map(repr, names))}. Pass one per input, in that order, or a dict by name."
            )
        return dict(zip(names, inputs, strict=True))
    if len(names) == 1:
        return {names[0]: inputs}
    raise InputError(
        f"A single {type(inputs).__name__} was passed{where}, but the model takes {len(names)} inputs: "
        f"{', '.join(map(repr, names))}. Pass a dict by name or a list in that order."
    )


def _from_frame(frame: Any, names: Sequence[str], dtypes: Mapping[str, np.dtype[Any] | None]) -> dict[str, Any]:
    """A pandas DataFrame as inputs: one per column named like an input, else one matrix.

    A DataFrame's columns carry their own types, so numeric columns are converted to the
    numeric dtype each input declares (an int column feeding a float input is expected).
    """
    columns = [str(c) for c in frame.columns]
    if set(names) <= set(columns) and (len(names) > 1 or names[0] in columns):
        by_name = dict(zip(columns, frame.columns, strict=True))
        return {name: _column(frame[by_name[name]], dtypes.get(name)) for name in names}
    if len(names) == 1:
        matrix = frame.to_numpy()
        want = dtypes.get(names[0])
        return {names[0]: matrix.astype(want) if want is not None and matrix.dtype.kind in "biuf" else matrix}
    raise InputError(
        f"The DataFrame's columns {columns} do not name the model's inputs {list(names)}. Pass a DataFrame with "
        "those columns, or a dict of arrays by input name."
    )


def _column(series: Any, want: np.dtype[Any] | None) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype.kind not in "biuf":  # strings, categories: the model takes tensor(string)
        values = values.astype(object)
    elif want is not None and want.kind in "biuf":
        values = values.astype(want)
    return values.reshape(-1, 1)


def raise_names(given: Mapping[str, Any], names: Sequence[str]) -> None:
    missing = [n for n in names if n not in given]
    unknown = [n for n in given if n not in names]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(map(repr, missing))}")
    if unknown:
        parts.append(f"unknown {', '.join(map(repr, map(str, unknown)))}")
    raise InputError(
        f"Inputs do not match the model ({'; '.join(parts)}). The model's inputs are: {', '.join(map(repr, names))}."
    )


def to_numpy(value: Any, name: str = "input") -> np.ndarray:
    """A numpy view of an array-like; torch tensors are detached and moved to CPU.

    torch is never imported here: a tensor is recognised by its class's module.
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return _torch_to_numpy(value, name)
    if hasattr(value, "numpy") and type(value).__module__.startswith("tensorflow"):
        return np.asarray(value.numpy())
    try:
        return np.asarray(value)
    except Exception as err:
        raise InputError(f"Input {name!r} of type {type(value).__name__} cannot be read as an array: {err}") from err


def _torch_to_numpy(value: Any, name: str) -> np.ndarray:
    tensor = value.detach()
    if tensor.device.type == "meta":
        raise InputError(f"Input {name!r} is a meta tensor, which has a shape but no data; pass a real tensor.")
    if str(tensor.dtype) == "torch.bfloat16":
        raise InputError(f"Input {name!r} is a bfloat16 tensor, which numpy cannot hold; cast it to float32 first.")
    try:
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if str(tensor.layout) != "torch.strided":  # sparse COO/CSR/...: the same values, dense
            tensor = tensor.to_dense()
        if tensor.is_complex():
            tensor = tensor.resolve_conj()  # numpy cannot view a lazily conjugated tensor
        return np.asarray(tensor.numpy())
    except Exception as err:
        raise InputError(
            f"Input {name!r} is a {tensor.dtype} tensor ({tensor.layout}, on {tensor.device}) that numpy cannot read: "
            f"{first_line(err) or type(err).__name__}. Pass a dense CPU tensor or a numpy array."
        ) from err


def as_feeds(
    sample: Any, names: Sequence[str], label: str = "sample", dtypes: Mapping[str, np.dtype[Any] | None] | None = None
) -> dict[str, np.ndarray]:
    """Flat named arrays from a dict by name, a sequence in input order, one array, or a DataFrame."""
    given = as_mapping(sample, names, dtypes or {}, label)
    unknown = sorted(str(k) for k in given if k not in names)
    if unknown:
        raise InputError(f"{label} has inputs {unknown} that the model does not take; its inputs are {list(names)}.")
    return {str(k): to_numpy(v, str(k)) for k, v in given.items()}


def cast_to(value: np.ndarray, dtype: np.dtype[Any], name: str) -> np.ndarray:
    """``value`` as ``dtype`` (same kind only), refusing values the cast would change silently."""
    if value.dtype.kind != dtype.kind:
        raise InputError(
            f"Input {name!r} has dtype {value.dtype}, but the model expects {dtype}. Only same-kind dtypes "
            f"(e.g. float64 for float32) are cast automatically; convert it with .astype(np.{dtype.name})."
        )
    if value.size and dtype.kind in "iu" and dtype.itemsize < value.dtype.itemsize:
        info = np.iinfo(dtype)
        low, high = value.min(), value.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InputError(
                f"Input {name!r} holds {bad}, which does not fit the model's {dtype} (range {info.min} to "
                f"{info.max}); casting would wrap it silently. Pass values in that range."
            )
    narrower_float = dtype.kind == "f" and dtype.itemsize < value.dtype.itemsize
    try:
        if not narrower_float:  # nothing can overflow (integers were range-checked above)
            return value.astype(dtype)
        with np.errstate(over="raise"):  # a float that overflows the narrower type raises in the cast: no extra pass
            return value.astype(dtype)
    except FloatingPointError:
        with np.errstate(over="ignore"):
            overflow = np.isinf(value.astype(dtype)) & np.isfinite(value)
        raise InputError(
            f"Input {name!r} holds {value[overflow].flat[0]!r}, beyond the largest {dtype} "
            f"({np.finfo(dtype).max:.4g}); casting would turn it into inf. Scale the input, or export with "
            "float64 inputs."
        ) from None
    except MemoryError as err:
        raise InputError(
            f"Input {name!r} of shape {value.shape} would need {value.size * dtype.itemsize / 2**30:.1f} GiB as "
            f"{dtype}, more than this machine can allocate. Pass fewer rows at a time."
        ) from err
