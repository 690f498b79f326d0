"""One ONNX graph from two artifacts: ``ob.compose(first, second, connect={...})``.

``onnx.compose.merge_models`` joins the graphs. onnxbridge makes them joinable first (the same
opset for the default domain, converted up with :mod:`._opset`; one IR version; names that
clash prefixed), checks the joint (names that exist, the same dtype and compatible fixed sizes
on both sides), and validates the result against the two source models run one after the
other, which is what the user would otherwise stitch by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._errors import InputError
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported

if TYPE_CHECKING:
    import onnx

    from onnxbridge._artifact import Artifact


def compose(first: Artifact, second: Artifact, connect: Mapping[str, str] | None = None) -> Artifact:
    """One model that runs ``second`` on the outputs of ``first``, validated against both sources.

    Args:
        first: The artifact whose outputs feed the other (e.g. scikit-learn preprocessing).
        second: The artifact that consumes them (e.g. a PyTorch head).
        connect: ``{first_output: second_input}``. May be left out when ``first`` has one output
            and ``second`` one input.

    Returns:
        A new :class:`~onnxbridge.Artifact` whose inputs are ``first``'s (and any of ``second``'s
        left unconnected) and whose outputs are ``second``'s, already validated against running
        ``first``'s source then ``second``'s (``.validation``; skipped when a source is missing).

    Raises:
        InputError: ``connect`` names an output or input that does not exist, leaves a required
            joint open, or joins tensors of different dtypes or fixed sizes (both sides named).
        ValidationError: the composed graph computes something other than the two sources.
    """
    from onnxbridge._artifact import Artifact

    joints = _joints(first, second, connect)
    _check_joints(first.model, second.model, joints)
    a, b, notes = _joinable(first.model, second.model, joints)
    renamed_first, renamed_second = _prefixes(a, b, joints)
    io_map = [(renamed_first.get(out, out), renamed_second.get(inp, inp)) for out, inp in joints.items()]
    import onnx

    merged = onnx.compose.merge_models(
        _renamed(a, renamed_first), _renamed(b, renamed_second), io_map=io_map, outputs=[o.name for o in b.graph.output]
    )
    open_inputs = [i for i in second.input_names if i not in joints.values()]
    axes = {
        **{k: v for k, v in first.dynamic_axes.items() if k in first.input_names},
        **{renamed_second.get(k, k): v for k, v in second.dynamic_axes.items() if k in open_inputs},
        **{k: v for k, v in second.dynamic_axes.items() if k in second.output_names},
    }
    run = _chain(first, second, joints, renamed_second) if first.has_source and second.has_source else None
    sample = dict(first.reference.sample) if first.reference.sample is not None else None
    if sample is not None and open_inputs and second.reference.sample is not None:
        sample.update({renamed_second.get(k, k): second.reference.sample[k] for k in open_inputs})
    exported = Exported(
        model=merged,
        framework=f"{first.framework}+{second.framework}",
        framework_version=f"{first.framework_version}; {second.framework_version}",
        exporter=f"onnx.compose ({first.exporter}; {second.exporter})",
        dynamic_axes=axes,
        sample=sample,
        reference=run,
        reference_outputs=run(sample) if run is not None and sample is not None else None,
        notes=[f"composed: {', '.join(f'{k} -> {v}' for k, v in joints.items())}", *notes],
    )
    art = Artifact(exported)
    art.validate()
    return art


def _joints(first: Artifact, second: Artifact, connect: Mapping[str, str] | None) -> dict[str, str]:
    if connect is None:
        if len(first.output_names) == 1 and len(second.input_names) == 1:
            return {first.output_names[0]: second.input_names[0]}
        raise InputError(
            f"compose() needs connect={{first_output: second_input}}: the first model has outputs "
            f"{first.output_names} and the second inputs {second.input_names}."
        )
    joints = dict(connect)
    if not joints:
        raise InputError(
            "connect={} joins nothing; map at least one output of the first model to an input of the second: "
            f"outputs {first.output_names}, inputs {second.input_names}."
        )
    unknown_out = [k for k in joints if k not in first.output_names]
    unknown_in = [v for v in joints.values() if v not in second.input_names]
    if unknown_out or unknown_in:
        raise InputError(
            f"connect={joints!r} names {unknown_out + unknown_in}, which do not exist: the first model's "
            f"outputs are {first.output_names}, the second model's inputs {second.input_names}."
        )
    if len(set(joints.values())) != len(joints):
        raise InputError(f"connect={joints!r} feeds one input of the second model twice; map each input once.")
    return joints


def _value(values: Any, name: str) -> Any:
    return next(v for v in values if v.name == name)


def _check_joints(a: onnx.ModelProto, b: onnx.ModelProto, joints: Mapping[str, str]) -> None:
    """Same dtype on both sides of each joint, and no fixed size that disagrees."""
    import onnx

    for out, inp in joints.items():
        left, right = _value(a.graph.output, out).type.tensor_type, _value(b.graph.input, inp).type.tensor_type
        if left.elem_type != right.elem_type:
            names = [onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name for t in (left, right)]
            raise InputError(
                f"The joint {out!r} -> {inp!r} joins different dtypes: the first model's output {out!r} is "
                f"{names[0]}, the second model's input {inp!r} takes {names[1]}. Export one of them with the "
                "other's dtype (scikit-learn: precision='float32' or 'float64'; torch: model.float() or .double())."
            )
        dims = [[d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] for t in (left, right)]
        if len(dims[0]) != len(dims[1]) or any(x and y and x != y for x, y in zip(*dims, strict=False)):
            raise InputError(
                f"The joint {out!r} -> {inp!r} joins different shapes: the first model's output is "
                f"{_shape(dims[0])}, the second model's input takes {_shape(dims[1])}."
            )


def _shape(dims: list[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _joinable(a: onnx.ModelProto, b: onnx.ModelProto, joints: Mapping[str, str]) -> tuple[Any, Any, list[str]]:
    """Both models at the same default-domain opset (the higher) and IR version."""
    import onnx

    from onnxbridge.graph import _opset

    a, b = onnx.ModelProto.FromString(a.SerializeToString()), onnx.ModelProto.FromString(b.SerializeToString())
    notes = []  # the artifacts' own graphs stay as they are: the edits below are on copies
    ours, theirs = _opset.main_opset(a), _opset.main_opset(b)
    if ours != theirs:
        target = max(ours, theirs)
        if ours < target:
            a, _ = _opset.convert_opset(a, target)
        else:
            b, _ = _opset.convert_opset(b, target)
        notes.append(f"opsets aligned: {'first' if ours < target else 'second'} model {min(ours, theirs)} -> {target}")
    for model in (a, b):
        if model.ir_version < max(a.ir_version, b.ir_version):
            model.ir_version = max(a.ir_version, b.ir_version)
    return a, b, notes


def _prefixes(a: Any, b: Any, joints: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """New names for the values that clash: ``first.``/``second.`` before internal names only.

    The first model's inputs and the second model's outputs keep their names (they are the
    composed model's interface); a clashing open input of the second model is prefixed.
    """
    import onnx

    overlaps = onnx.compose.check_overlapping_names(a.graph, b.graph, list(joints.items()))
    clashing = {name for _, names in overlaps for name in names}
    keep_first = {i.name for i in a.graph.input}
    keep_second = {o.name for o in b.graph.output}
    first = {n: f"first.{n}" for n in clashing if n not in keep_first}
    second = {n: f"second.{n}" for n in clashing if n not in keep_second or n in first}
    return first, second


def _renamed(model: Any, mapping: Mapping[str, str]) -> Any:
    if not mapping:
        return model
    import onnx

    from onnxbridge.graph import _graph

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _graph.rename_values(copy.graph, mapping)
    for node in copy.graph.node:
        if node.name in mapping:
            node.name = mapping[node.name]
    return copy


def _chain(first: Artifact, second: Artifact, joints: Mapping[str, str], renamed: Mapping[str, str]) -> Any:
    """The two sources one after the other, each joint cast to the dtype the second graph takes."""
    from onnxbridge.graph import _graph

    run_first, run_second = first.reference.run, second.reference.run
    assert run_first is not None
    assert run_second is not None
    dtypes = _graph.input_dtypes(second.model)
    open_inputs = {renamed.get(i, i): i for i in second.input_names if i not in joints.values()}

    def run(feeds: Feeds) -> Feeds:
        middle = run_first({k: v for k, v in feeds.items() if k in first.input_names})
        fed = {inp: np.asarray(middle[out]).astype(dtypes[inp] or np.float32) for out, inp in joints.items()}
        fed.update({original: feeds[name] for name, original in open_inputs.items()})
        return run_second(fed)

    return run
