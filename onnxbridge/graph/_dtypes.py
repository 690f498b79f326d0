"""Element types: ONNX's, onnxruntime's type strings and numpy's, mapped in one place."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["from_onnx", "from_ort", "display_name"]


def from_onnx(elem_type: int) -> np.dtype[Any] | None:
    """The numpy dtype of an ONNX ``TensorProto`` element type; ``None`` if unset or numpy has none.

    Types numpy lacks (bfloat16, the float8 and int4 families) are ``None``: onnx maps them to
    ml_dtypes' extension types, which users' arrays are not.
    """
    if not elem_type:
        return None
    from onnx import helper

    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return None
    return dtype if dtype.kind in "biufcOU" else None


def from_ort(type_string: str) -> np.dtype[Any] | None:
    """The numpy dtype of an onnxruntime type string such as ``"tensor(float)"``; ``None`` for others.

    onnxruntime names element types as ONNX does, in lower case (``float``, ``double``,
    ``int64``, ``string``...); sequences and maps are ``None``.
    """
    if not (type_string.startswith("tensor(") and type_string.endswith(")")):
        return None
    from onnx import TensorProto

    try:
        return from_onnx(TensorProto.DataType.Value(type_string[7:-1].upper()))
    except ValueError:
        return None


def display_name(dtype: np.dtype[Any] | None) -> str:
    """``dtype``'s numpy name for people: ``"string"`` for text, ``"unknown"`` for ``None``."""
    if dtype is None:
        return "unknown"
    return "string" if dtype.kind in "OU" else dtype.name
