"""Dynamic axes: one normal form for every framework.

Users write dynamic axes the way torch taught them: ``{"input": {0: "batch"}}``,
``{"input": [0, 1]}``, or the shorthand ``"batch"`` (axis 0 of every input and
output). Everything inside onnxbridge works on the normal form
``{tensor_name: {axis: dim_name}}`` with non-negative axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from onnxbridge.core._errors import InputError

DynamicAxesSpec: TypeAlias = "Mapping[str, Mapping[int, str] | Sequence[int]] | str | None"
"""What ``export(dynamic_axes=...)`` accepts."""

DynamicAxes: TypeAlias = dict[str, dict[int, str]]
"""The normal form: tensor name -> axis -> symbolic dimension name."""


def normalize_dynamic_axes(
    spec: DynamicAxesSpec,
    inputs: Mapping[str, int],
    outputs: Mapping[str, int] | None = None,
) -> DynamicAxes:
    """Check ``spec`` against the model's tensors and return the normal form.

    Args:
        spec: The user's dynamic axes, in any accepted form.
        inputs: Input name -> rank.
        outputs: Output name -> rank; ``None`` when output ranks are not known yet
            (axes on outputs are then checked against names only when given).

    Raises:
        InputError: A name that is neither an input nor an output, an axis beyond
            the tensor's rank, or a malformed specification.
    """
    outputs = outputs or {}
    ranks = {**outputs, **inputs}
    if spec is None:
        return {}
    if isinstance(spec, str):
        if not spec.strip():
            raise InputError(
                "dynamic_axes='' is empty. Pass a dimension name such as 'batch' "
                "(axis 0 of every input and output), or a dict like {'input': {0: 'batch'}}."
            )
        return {name: {0: spec} for name, rank in ranks.items() if rank > 0}
    if not isinstance(spec, Mapping):
        raise InputError(
            f"dynamic_axes must be a dict like {{'input': {{0: 'batch'}}}}, a list form like "
            f"{{'input': [0]}}, or the string 'batch'; got {type(spec).__name__}."
        )
    known = list(inputs) + [o for o in outputs if o not in inputs]
    result: DynamicAxes = {}
    for name, axes in spec.items():
        if name not in ranks:
            raise InputError(
                f"dynamic_axes names {name!r}, which is not an input or output of the model. "
                f"Inputs and outputs are: {', '.join(map(repr, known)) or '(none)'}. "
                "Use one of those names (or pass input_names=/output_names= to rename them)."
            )
        result[name] = _normalize_one(name, axes, ranks[name])
    return result


def _normalize_one(name: str, axes: object, rank: int) -> dict[int, str]:
    pairs: list[tuple[object, object]]
    if isinstance(axes, Mapping):
        pairs = list(axes.items())
    elif isinstance(axes, Sequence) and not isinstance(axes, str):
        pairs = [(axis, None) for axis in axes]  # named after the axis, once it is known to be valid
    else:
        raise InputError(
            f"dynamic_axes[{name!r}] must map axes to names ({{0: 'batch'}}) or list axes ([0]); got {axes!r}."
        )
    out: dict[int, str] = {}
    for axis, dim in pairs:
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise InputError(f"dynamic_axes[{name!r}] has axis {axis!r}; axes must be integers.")
        if not -rank <= axis < rank:
            raise InputError(
                f"dynamic_axes[{name!r}] marks axis {axis}, but {name!r} has rank {rank} "
                f"(valid axes: 0..{rank - 1}, or negative from the end). Fix the axis number."
            )
        if dim is None:
            dim = f"{name}_dim{axis % rank}"
        if not isinstance(dim, str) or not dim:
            raise InputError(f"dynamic_axes[{name!r}][{axis}] is {dim!r}; dimension names must be non-empty strings.")
        out[axis % rank] = dim
    return out


def axes_by_dim(axes: DynamicAxes, names: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """Group the dynamic axes of ``names`` by dimension name: dim -> [(tensor, axis)]."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name in names:
        for axis, dim in sorted(axes.get(name, {}).items()):
            groups.setdefault(dim, []).append((name, axis))
    return groups
