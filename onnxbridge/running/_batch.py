"""Columns to tensors and back, for batch inference on data engines (Ray Data, Spark).

A plan maps each model input to dataset columns (one column of per-row arrays for tensor
models, several scalar columns stacked for tabular models) and each output to a column. It
is checked on the driver against the dataset's columns and its first row, so a bad mapping
fails before any job starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._errors import InputError
from onnxbridge.graph import _dtypes

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class Plan:
    """Which columns feed which input, and which column receives each output."""

    inputs: tuple[tuple[str, tuple[str, ...], str, tuple[int | str | None, ...]], ...]  # name, columns, dtype, shape
    outputs: tuple[tuple[str, str], ...]  # output name, column

    @property
    def columns(self) -> list[str]:
        """Every input column, in order."""
        return [c for _, cols, _, _ in self.inputs for c in cols]


def plan(model: onnx.ModelProto, available: Sequence[str], input_columns: Any, output_columns: Any) -> Plan:
    """Check the mapping against the dataset's columns and the model's inputs and outputs."""
    from onnxbridge.graph import _graph

    specs = []
    for value in _graph.inputs(model):
        t = value.type.tensor_type
        dtype = np.dtype(_np_dtype(t.elem_type)).name
        shape = tuple(d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim)
        specs.append((value.name, dtype, shape))
    names = [s[0] for s in specs]
    if input_columns is None:
        mapping: dict[str, tuple[str, ...]] = {n: (n,) for n in names}
    elif isinstance(input_columns, Mapping):
        unknown = sorted(set(input_columns) - set(names))
        if unknown:
            raise InputError(f"input_columns names {unknown}, which are not model inputs; the inputs are {names}.")
        mapping = {n: _as_tuple(input_columns.get(n, n)) for n in names}
    else:
        if len(names) != 1:
            raise InputError(
                f"input_columns as a list works for single-input models; this one takes {names}. "
                "Pass a dict {input_name: column or [columns]}."
            )
        mapping = {names[0]: _as_tuple(input_columns)}
    for name, columns in mapping.items():
        missing = [c for c in columns if c not in available]
        if missing:
            raise InputError(
                f"Column(s) {missing} for model input {name!r} are not in the dataset (columns: {list(available)}). "
                "Pass input_columns={'" + name + "': 'column'} (or a list of feature columns for tabular models)."
            )
    inputs = tuple((n, mapping[n], dtype, shape) for n, dtype, shape in specs)
    for name, columns, _, shape in inputs:
        if len(columns) > 1 and (len(shape) != 2 or shape[1] != len(columns)):
            raise InputError(
                f"{len(columns)} columns were given for input {name!r}, which has shape {list(shape)}; stacking "
                f"scalar columns needs a [batch, {len(columns)}] input."
            )
    outs = [o.name for o in model.graph.output]
    if output_columns is None:
        out_map = {o: o for o in outs}
    elif isinstance(output_columns, Mapping):
        out_map = {o: output_columns.get(o, o) for o in outs}
    else:
        if len(output_columns) != len(outs):
            raise InputError(f"output_columns has {len(output_columns)} names but the model has outputs {outs}.")
        out_map = dict(zip(outs, output_columns, strict=True))
    clash = sorted(set(out_map.values()) & set(available))
    if clash:
        raise InputError(f"Output column(s) {clash} already exist in the dataset; choose others with output_columns=.")
    return Plan(inputs, tuple(out_map.items()))


def _as_tuple(columns: str | Sequence[str]) -> tuple[str, ...]:
    return (columns,) if isinstance(columns, str) else tuple(columns)


def _np_dtype(elem_type: int) -> Any:
    dtype = _dtypes.from_onnx(elem_type)
    return dtype if dtype is not None else np.dtype(np.float32)  # a dtype's truth is its field count


def feeds(plan: Plan, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Model inputs from a batch of columns (numpy arrays or lists of per-row arrays)."""
    out = {}
    for name, columns, dtype, shape in plan.inputs:
        if len(columns) > 1:
            arrays = [np.asarray(batch[c]) for c in columns]
            value = np.stack([_numeric(a, c, dtype) for a, c in zip(arrays, columns, strict=True)], axis=1)
        else:
            column = columns[0]
            raw = batch[column]
            value = np.asarray(raw)
            if value.dtype == object:  # a column of per-row arrays or lists
                try:
                    value = np.stack([np.asarray(v) for v in raw])
                except ValueError as err:
                    raise InputError(f"Column {column!r} holds rows of different shapes: {err}.") from err
            value = _numeric(value, column, dtype)
            row = tuple(d if isinstance(d, int) else -1 for d in shape[1:])
            if len(shape) == 1 and value.ndim == 2 and value.shape[1] == 1:
                value = value[:, 0]
            elif len(shape) > 1:
                try:
                    value = value.reshape((len(value), *row))
                except ValueError as err:
                    raise InputError(
                        f"Column {column!r} has rows of shape {value.shape[1:]}, which do not fit input {name!r} "
                        f"with shape {list(shape)} (rows must reshape to {[d if d != -1 else '?' for d in row]})."
                    ) from err
        out[name] = value
    return out


def _numeric(value: np.ndarray, column: str, dtype: str) -> np.ndarray:
    want = np.dtype(dtype)
    if value.dtype == want:
        return value
    if value.dtype.kind in "biuf" and want.kind in "biuf":
        return value.astype(want)
    raise InputError(f"Column {column!r} has dtype {value.dtype}; the model expects {want} (a numeric column).")


def columns(plan: Plan, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output columns: one value per row (a scalar, or an array for multi-dimensional outputs)."""
    result = {}
    for name, column in plan.outputs:
        value = outputs[name]
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        result[column] = value
    return result
