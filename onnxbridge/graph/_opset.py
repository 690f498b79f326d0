"""Converting a model to another opset of the default ONNX domain: what ``Artifact.with_opset`` does.

``onnx.version_converter`` does the conversion; onnxbridge checks first what it cannot do (an
operator that did not exist yet at the target opset is named with the opset it needs), lowers
the IR version with the opset so that an older runtime accepts the file, and says what it did.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from onnxbridge.core._errors import ExportError, InputError, first_line
from onnxbridge.graph import _graph, _passes

if TYPE_CHECKING:
    import onnx

# The oldest opset onnx.version_converter converts from and to.
OLDEST = 7


def main_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@functools.cache
def _introduced() -> dict[str, int]:
    """Each default-domain operator and the opset it first appeared in."""
    import onnx

    first: dict[str, int] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain in ("", "ai.onnx") and not schema.deprecated:
            first[schema.name] = min(first.get(schema.name, schema.since_version), schema.since_version)
    return first


def missing_at(model: onnx.ModelProto, target: int) -> dict[str, int]:
    """Operators of ``model`` that did not exist yet at opset ``target``, with the opset each needs."""
    needs = {}
    for node in _graph.all_nodes(model.graph):
        if node.domain in ("", "ai.onnx"):
            since = _introduced().get(node.op_type)
            if since is not None and since > target:
                needs[node.op_type] = since
    return needs


def convert_opset(model: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` at opset ``target`` and notes on what changed; typed errors for what cannot be done."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(target, bool) or not isinstance(target, int) or not OLDEST <= target <= newest:
        raise InputError(
            f"opset {target!r}: expected an int from {OLDEST} to {newest} (the opsets onnx "
            f"{onnx.__version__} converts between)."
        )
    current = main_opset(model)
    if current == target:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        dropped = drop_unused_imports(copy)
        return copy, [f"already at opset {target}: nothing converted", *dropped, *_lower_ir_version(copy, target)]
    missing = missing_at(model, target)
    if missing:
        listed = ", ".join(f"{op} (opset {since})" for op, since in sorted(missing.items()))
        lowest = max(missing.values())
        raise InputError(
            f"The model cannot be expressed at opset {target}: it uses {listed}, which did not exist yet. "
            f"The lowest opset it converts to is {lowest}; use with_opset({lowest}) or later, or re-export "
            f"the source model with opset={lowest} so the exporter picks other operators."
        )
    converted, relabelled = _convert_filling_gaps(model, target)
    notes = [f"opset {current} -> {target} with onnx.version_converter (onnx {onnx.__version__})"]
    if relabelled:
        notes.append(
            f"{', '.join(sorted(relabelled))}: onnx has no adapter down to opset {target}; the nodes use nothing "
            "the older version lacks (attributes, inputs, types), so they keep their form (validation checks it)"
        )
    notes += drop_unused_imports(converted)
    if target < current:
        notes += _lower_ir_version(converted, target)
    return converted, notes


def unused_domains(model: onnx.ModelProto) -> list[str]:
    """Domains the model imports an opset of but no node (nor local function) uses."""
    used = {n.domain or "ai.onnx" for n in _graph.all_nodes(model.graph)}
    used |= {n.domain or "ai.onnx" for f in model.functions for n in f.node} | {f.domain for f in model.functions}
    return [o.domain for o in model.opset_import if (o.domain or "ai.onnx") not in used | {"ai.onnx"}]


def drop_unused_imports(model: onnx.ModelProto) -> list[str]:
    """Remove opset imports no node uses (they can demand a newer IR version and runtime); notes."""
    dropped = _passes.remove_unused_opsets(model)
    return [f"dropped opset imports no node uses: {', '.join(dropped)}"] if dropped else []


_NO_ADAPTER = re.compile(r"No Adapter (?:From|To) Version \$?(\d+) for (\w+)")
_PARKED = "onnxbridge.parked"  # a domain the version converter leaves alone


def _convert_filling_gaps(model: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto, set[str]]:
    """``onnx.version_converter``, with the operators it has no adapter for carried over as they are.

    onnx 1.23's converter has no down adapter for many operators whose newer version only
    widened the types or added an optional attribute (Relu 14, Shape 15, ...). A node of such an
    operator that uses nothing its version at ``target`` lacks is parked in a private domain
    while the converter runs, then put back. One that does use something newer is refused.
    """
    import onnx

    # With every value's shape recorded before any node is parked (parked nodes infer nothing):
    # onnx's adapters read shapes (Softmax 13 -> 12 its input's rank) and crash without them.
    work = _with_shapes(model)
    types = _graph.element_types(model)
    parked: set[str] = set()
    while True:
        try:
            converted = onnx.version_converter.convert_version(work, target)
            break
        except Exception as err:
            gap = _NO_ADAPTER.search(str(err))
            if gap is None or gap.group(2) in parked:
                raise ExportError(
                    f"onnx's version converter could not take this model from opset {main_opset(model)} to "
                    f"{target} ({type(err).__name__}: {first_line(err)}). Re-export the source model with "
                    f"opset={target}, which lets the exporter choose operators that exist there."
                ) from err
            op = gap.group(2)
            problem = _newer_than(work, op, target, types)
            if problem:
                raise InputError(
                    f"{op} cannot go down to opset {target}: onnx has no adapter for it, and {problem}. Keep a "
                    f"newer opset, or re-export the source model with opset={target}."
                ) from err
            _drop_defaults(work, op, target)
            _set_domain(work.graph, op, "", _PARKED)
            if all(o.domain != _PARKED for o in work.opset_import):
                work.opset_import.add(domain=_PARKED, version=1)
            parked.add(op)
    _set_domain(converted.graph, None, _PARKED, "")
    _drop_stale_defaults(converted, main_opset(model), target)
    kept = [o for o in converted.opset_import if o.domain != _PARKED]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    return converted, parked


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose value_info holds every shape onnx infers (a plain copy if it cannot)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        work = onnx.ModelProto()
        work.CopyFrom(model)
        return work


def _set_domain(graph: onnx.GraphProto, op: str | None, old: str, new: str) -> None:
    for node in _graph.all_nodes(graph):
        if node.domain == old and (op is None or node.op_type == op):
            node.domain = new


def _defaults_only(model: onnx.ModelProto, op: str, target: int) -> dict[str, Any]:
    """Attributes of the newer ``op`` that its version at ``target`` lacks, with their default values."""
    import onnx

    newer, older = onnx.defs.get_schema(op, main_opset(model)), onnx.defs.get_schema(op, target)
    return {
        name: onnx.helper.get_attribute_value(attr.default_value)
        for name, attr in newer.attributes.items()
        if name not in older.attributes and attr.default_value.name
    }


def _irrelevant(model: onnx.ModelProto, node: onnx.NodeProto, name: str) -> bool:
    """Whether an attribute cannot change this node's result.

    Reshape's ``allowzero`` only says what a 0 in the shape means: with a constant shape that has
    no 0, it changes nothing.
    """
    import onnx

    if (node.op_type, name) == ("Reshape", "allowzero") and len(node.input) > 1:
        shape = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
        return shape is not None and bool((onnx.numpy_helper.to_array(shape) != 0).all())
    return False


def _drop_defaults(model: onnx.ModelProto, op: str, target: int) -> None:
    """Remove attributes the older version lacks from ``op`` nodes (they hold their default, or cannot matter)."""
    defaults = _defaults_only(model, op, target)
    for node in _graph.all_nodes(model.graph):
        if node.op_type == op and node.domain in ("", "ai.onnx"):
            kept = [a for a in node.attribute if a.name not in defaults]
            del node.attribute[:]
            node.attribute.extend(kept)


def _drop_stale_defaults(model: onnx.ModelProto, source: int, target: int) -> None:
    """Remove attributes that onnx's adapters carried down although ``target`` lacks them, where they hold the default.

    onnx 1.23's ReduceMean 18 -> 17 adapter moves ``axes`` to an attribute but keeps
    ``noop_with_empty_axes`` (new in 18), which checkers and onnxruntime then refuse; at its
    default value it changes nothing.
    """
    import onnx

    for node in _graph.all_nodes(model.graph):
        if node.domain not in ("", "ai.onnx") or not node.attribute:
            continue
        try:
            old, new = onnx.defs.get_schema(node.op_type, target), onnx.defs.get_schema(node.op_type, source)
        except onnx.defs.SchemaError:
            continue
        stale = [
            a
            for a in node.attribute
            if a.name not in old.attributes
            and a.name in new.attributes
            and new.attributes[a.name].default_value.name
            and onnx.helper.get_attribute_value(a)
            == onnx.helper.get_attribute_value(new.attributes[a.name].default_value)
        ]
        for attribute in stale:
            node.attribute.remove(attribute)


def _newer_than(model: onnx.ModelProto, op: str, target: int, types: dict[str, str]) -> str:
    """What the ``op`` nodes use that its version at ``target`` lacks ('' when nothing)."""
    import onnx

    old = onnx.defs.get_schema(op, target)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in old.type_constraints}
    defaults = _defaults_only(model, op, target)
    for node in _graph.all_nodes(model.graph):
        if node.op_type != op or node.domain not in ("", "ai.onnx"):
            continue
        extra = {
            a.name
            for a in node.attribute
            if a.name not in old.attributes
            and not (a.name in defaults and onnx.helper.get_attribute_value(a) == defaults[a.name])
            and not _irrelevant(model, node, a.name)
        }
        if extra:
            return f"a node sets {', '.join(sorted(extra))}, which opset {target}'s {op} does not have"
        if len(node.input) > old.max_input:
            return f"a node has {len(node.input)} inputs; opset {target}'s {op} takes at most {old.max_input}"
        for name, formal in zip(node.input, old.inputs, strict=False):
            type_str = types.get(name)
            if name and type_str and formal.type_str in allowed and type_str not in allowed[formal.type_str]:
                return f"a node takes {type_str}, which opset {target}'s {op} does not accept"
    return ""


def _lower_ir_version(model: onnx.ModelProto, target: int) -> list[str]:
    """The oldest IR version the opsets allow (older runtimes refuse newer IR), if the model still checks."""
    import onnx

    was, oldest = model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if was <= oldest:
        return []
    model.ir_version = oldest
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        model.ir_version = was
        return [f"IR version kept at {was}: the model needs it ({first_line(err)})"]
    return [f"IR version {was} -> {oldest}, the oldest that opset {target} allows"]
