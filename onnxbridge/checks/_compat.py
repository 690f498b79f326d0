"""Will the model run where it is deployed? What ``Artifact.compat(target)`` checks, before deployment.

Targets:

* ``"onnxruntime==1.17"`` (any recorded release) or ``"onnxruntime"`` (the installed one): the IR
  version and opsets the release loads, and every node against the release's CPU kernels
  (operator, version, types), as recorded from the release itself (:mod:`onnxbridge.checks._ort_releases`);
* ``"onnxruntime-web"``: the model is run under Node.js by onnxruntime-web's WebAssembly backend
  and its outputs compared with Python onnxruntime's (:mod:`onnxbridge.checks._web_check`);
* ``"opset=13"``: operators that did not exist yet, and whether the conversion goes through.

Each finding names the node, the operator and a fix; the report lists what was checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from onnxbridge.checks._compat_report import CompatFinding, CompatReport
from onnxbridge.core._errors import InputError, OnnxBridgeError, first_line

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from onnxbridge.checks._ort_releases import Runtime
    from onnxbridge.core._types import Feeds

TARGETS = "'onnxruntime==1.17' (any release), 'onnxruntime' (the installed one), 'onnxruntime-web', 'opset=13'"
_TARGET = re.compile(r"^\s*(?:(onnxruntime)\s*(?:==\s*([\w.]+))?|(onnxruntime-web)|opset\s*==?\s*(\d+))\s*$")
# Operators that one quantization mode adds, for fixes that say which mode to avoid.
_MADE_BY = {
    "MatMulNBits": "int4",
    "DynamicQuantizeLinear": "dynamic",
    "MatMulInteger": "dynamic",
    "DynamicQuantizeMatMul": "dynamic",
    "QLinearMatMul": "static",
    "QLinearConv": "static",
    "QLinearAdd": "static",
}
FLOAT16 = "tensor(float16)"
# The fix of findings that an opset conversion resolves; replaced by the conversion that does, once tried.
_BY_OPSET = "<convert the opset>"
TRY_LIMIT = 256 << 20  # bytes: larger models get the opset fix named, not tried on copies


def check(
    model: onnx.ModelProto,
    target: str,
    *,
    properties: Mapping[str, str],
    sample: Feeds | None = None,
    run: Callable[[Feeds], Mapping[str, np.ndarray]] | None = None,
) -> CompatReport:
    """Implementation of :meth:`onnxbridge.Artifact.compat`.

    Args:
        model: The model to check.
        target: What to check against (see :data:`TARGETS`).
        properties: The artifact's facts (a quantized model's mode explains some findings).
        sample: Inputs to run in onnxruntime-web (default: made up from the declared shapes).
        run: Runs ``model`` in Python onnxruntime on CPU, for onnxruntime-web's outputs to be compared with.
    """
    from onnxbridge.checks import _ort_releases

    match = _TARGET.match(target) if isinstance(target, str) else None
    if match is None:
        raise InputError(f"compat target {target!r}: expected one of {TARGETS}.")
    _, version, web, opset = match.groups()
    if web:
        from onnxbridge.checks import _web_check

        return _web_check.compat(model, properties=properties, sample=sample, run=run)
    if opset:
        return _check_opset(model, int(opset))
    release = _ort_releases.release(version) if version else _ort_releases.installed()
    name = f"onnxruntime {release.version}" + ("" if version else " (installed)")
    report = CompatReport(name)
    report.findings, report.notes = check_release(model, release, properties)
    report.checked = [
        f"IR version and opsets against what {name} loads",
        f"every node against {name}'s CPU kernels: operator, version and input/output types",
    ]
    report.not_checked = [
        "other execution providers (CUDA, TensorRT, ...)",
        "the attributes and optional inputs of com.microsoft operators (older releases may lack newer ones)",
        "the outputs' values (run the model on that release for those)",
    ]
    contrib = sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})
    if contrib:
        report.notes.append(
            f"com.microsoft operators ({', '.join(contrib)}) are checked by name, version and how many inputs they "
            "are given, not by what those inputs and their attributes mean, which has changed between releases (an "
            "optimized BERT's Attention, whose mask bias is broadcast over heads, fails at run time in onnxruntime "
            "1.18 and 1.19). Run the model on that release, or deploy the artifact before optimize()"
        )
    if report.findings:
        _add_opset_fix(model, release, report)
    return report


def check_release(
    model: onnx.ModelProto, runtime: Runtime, properties: Mapping[str, str] | None = None
) -> tuple[list[CompatFinding], list[str]]:
    """Findings and notes for ``model`` on ``runtime``'s CPU kernels."""
    from onnxbridge.checks import _ort_releases as ort_releases
    from onnxbridge.checks._ort_releases import ONNX_DOMAIN, opsets_of
    from onnxbridge.graph import _graph, _opset

    findings: list[CompatFinding] = []
    notes: set[str] = set()
    opsets = opsets_of(model)
    name = f"onnxruntime {runtime.version}"
    if model.ir_version > runtime.ir:
        findings.append(
            CompatFinding(f"IR version {model.ir_version}; {name} loads IR {runtime.ir} at most", _BY_OPSET)
        )
    if opsets.get(ONNX_DOMAIN, 0) > runtime.opsets[ONNX_DOMAIN]:
        limit = runtime.opsets[ONNX_DOMAIN]
        findings.append(CompatFinding(f"opset {opsets[ONNX_DOMAIN]}; {name} loads opset {limit} at most", _BY_OPSET))
    ml = opsets.get("ai.onnx.ml", 0)
    if ml > runtime.opsets["ai.onnx.ml"]:
        first = ort_releases.first_release_loading("ai.onnx.ml", ml)
        fix = f"deploy onnxruntime {first} or newer" if first else "no recorded onnxruntime release loads it"
        if "ai.onnx.ml" in _opset.unused_domains(model):
            fix = _BY_OPSET  # imported but unused: an opset conversion drops the import
        findings.append(
            CompatFinding(f"ai.onnx.ml opset {ml}; {name} loads {runtime.opsets['ai.onnx.ml']} at most", fix)
        )
    local = {(f.domain, f.name) for f in model.functions}
    types = _graph.element_types(model)
    grouped: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    for node in _graph.all_nodes(model.graph):
        if (node.domain, node.op_type) in local or (node.domain in ("", ONNX_DOMAIN) and node.op_type == "Constant"):
            continue  # local functions are inlined, Constant nodes become weights: neither needs a kernel
        problem, fix, note = _node_problem(node, opsets, types, runtime, properties or {})
        if note:
            notes.add(note)
        if problem:
            key = (node.domain or ONNX_DOMAIN, node.op_type, problem)
            grouped.setdefault(key, (fix, []))[1].append(node.name)
    for (domain, op, problem), (fix, nodes) in grouped.items():
        findings.append(CompatFinding(problem, fix, op, domain, tuple(nodes)))
    return findings, sorted(notes)


def _node_problem(
    node: onnx.NodeProto,
    opsets: Mapping[str, int],
    types: Mapping[str, str],
    runtime: Runtime,
    properties: Mapping[str, str],
) -> tuple[str, str, str]:
    """(problem, fix, note) for one node; empty strings when there is none."""
    from onnxbridge.checks import _ort_releases as ort_releases

    schema = _schema(node, opsets)
    version = schema.since_version if schema is not None else opsets.get(node.domain or ort_releases.ONNX_DOMAIN)
    wanted = _node_types(node, schema, types)
    name = f"onnxruntime {runtime.version}"
    op = f"{node.op_type}-{version}" if version else node.op_type
    if ort_releases.kernel_for(runtime, node.domain, node.op_type, version, wanted) is not None:
        return inputs_problem(node, runtime)
    half = {p: t for p, t in wanted.items() if t != FLOAT16}
    if half != wanted and ort_releases.kernel_for(runtime, node.domain, node.op_type, version, half) is not None:
        return "", "", f"{op} has no float16 CPU kernel in {name}; onnxruntime runs it through casts to float32"
    if schema is not None and (schema.has_function or schema.has_context_dependent_function):
        return "", "", f"{op} has no kernel in {name}; it runs as its ONNX function (other operators)"
    if ort_releases.kernel_for(runtime, node.domain, node.op_type, None, {}) is not None and (
        ort_releases.kernel_for(runtime, node.domain, node.op_type, version, {}) is None
    ):
        covered = sorted((k.start, k.end) for k in runtime.kernels[(node.domain or "ai.onnx", node.op_type)])
        spans = ", ".join(f"{a}" if a == b else f"{a}-{b if b < 2**31 - 1 else ''}" for a, b in covered)
        return f"{name} has no CPU kernel for {op} (its kernels cover versions {spans})", _BY_OPSET, ""
    first = ort_releases.first_release_with(node.domain, node.op_type, version, wanted)
    upgrade = (
        f"deploy onnxruntime {first} or newer (the first recorded release that runs it)"
        if first
        else "no recorded onnxruntime release runs it on CPU: re-export so that other operators are used"
    )
    made_by = _MADE_BY.get(node.op_type)
    if made_by and properties.get("quantization") == made_by:
        upgrade = f"it comes from quantize({made_by!r}): quantize with another mode for {name}, or {upgrade}"
    elif node.domain == "com.microsoft" and "optimization" in properties:
        upgrade = f"art.optimize() fused it: deploy the artifact before optimize(), optimize('basic'), or {upgrade}"
    elif node.domain == "com.microsoft" and properties.get("task") == "text-generation":
        upgrade = f"the export fused the decoder: deploy art.fallback (standard operators), or {upgrade}"
    if ort_releases.kernel_for(runtime, node.domain, node.op_type, None, {}) is None:
        return f"{name} has no CPU kernel for {node.op_type}", upgrade, ""
    listed = ", ".join(sorted(set(wanted.values())))
    return f"{name} has no CPU kernel for {node.op_type} on {listed}", upgrade, ""


def graph_inputs_problem(model: onnx.ModelProto, version: str) -> str:
    """The first contrib operator of ``model`` given more inputs than onnxruntime ``version`` takes, said, or ``""``.

    What a runtime pinned to an older onnxruntime (transformers.js, onnxruntime-web) refuses in a
    decoder fused for onnxruntime 1.32.
    """
    from onnxbridge.checks import _ort_releases as ort_releases
    from onnxbridge.graph import _graph

    runtime = ort_releases.release(version)
    for node in _graph.all_nodes(model.graph):
        problem = inputs_problem(node, runtime)[0]
        if problem:
            return problem
    return ""


def inputs_problem(node: onnx.NodeProto, runtime: Runtime) -> tuple[str, str, str]:
    """A contrib operator given an input its release does not take yet (a later release added it)."""
    from onnxbridge.checks import _ort_releases as ort_releases

    takes = runtime.inputs.get((node.domain, node.op_type))
    used = max((i + 1 for i, name in enumerate(node.input) if name), default=0)
    if takes is None or used <= takes:
        return "", "", ""
    first = ort_releases.first_release_taking(node.domain, node.op_type, used)
    problem = f"onnxruntime {runtime.version}'s {node.op_type} takes {takes} inputs; this node gives input {used}"
    fix = f"deploy onnxruntime {first} or newer, or" if first else "deploy"
    return (
        problem,
        f"{fix} the graph in standard operators (art.fallback of a fused export, the artifact before optimize())",
        "",
    )


def _schema(node: onnx.NodeProto, opsets: Mapping[str, int]) -> Any:
    import onnx

    domain = node.domain or "ai.onnx"
    if domain not in ("ai.onnx", "ai.onnx.ml") or domain not in opsets:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opsets[domain], "" if domain == "ai.onnx" else domain)
    except onnx.defs.SchemaError:
        return None


def _node_types(node: onnx.NodeProto, schema: Any, types: Mapping[str, str]) -> dict[str, str]:
    """The type each type parameter of the node's schema takes here, as far as inference knows it."""
    if schema is None:
        return {}
    wanted: dict[str, str] = {}
    for names, formals in ((node.input, schema.inputs), (node.output, schema.outputs)):
        for i, value in enumerate(names):
            if not value or not formals:
                continue
            formal = formals[min(i, len(formals) - 1)]
            if value not in types:
                continue
            wanted.setdefault(formal.type_str, types[value])
    return wanted


def _add_opset_fix(model: onnx.ModelProto, runtime: Runtime, report: CompatReport) -> None:
    """Give the findings an opset conversion resolves the conversion that does, tried on a copy."""
    from onnxbridge.checks._ort_releases import ONNX_DOMAIN, opsets_of
    from onnxbridge.graph import _files, _opset

    if not any(f.fix == _BY_OPSET for f in report.findings):
        return
    current = opsets_of(model).get(ONNX_DOMAIN, 0)
    fix = (
        f"no opset from {_opset.OLDEST} to {runtime.opsets[ONNX_DOMAIN]} makes this model load in onnxruntime "
        f"{runtime.version} with a kernel for every node; deploy a newer onnxruntime"
    )
    highest = min(current, runtime.opsets[ONNX_DOMAIN])
    if _files.model_bytes(model) > TRY_LIMIT:
        fix = (
            f"art.with_opset({highest}) (not tried here: the model is past {TRY_LIMIT >> 20} MiB; with_opset "
            "validates it against the source)"
        )
        candidates: range = range(0)
    else:
        candidates = range(highest, _opset.OLDEST - 1, -1)
    for target in candidates:
        try:
            converted, _ = _opset.convert_opset(model, target)
        except OnnxBridgeError:
            continue
        remaining, _ = check_release(converted, runtime)
        if not any(f.fix == _BY_OPSET for f in remaining):
            fix = (
                f"art.with_opset({target}) (tried on a copy: the converted model loads in onnxruntime "
                f"{runtime.version} and every node has a kernel; with_opset validates it against the source)"
            )
            break
    report.findings = [CompatFinding(f.problem, fix, f.op_type, f.domain, f.nodes) if f.fix == _BY_OPSET else f
                       for f in report.findings]  # fmt: skip


def _check_opset(model: onnx.ModelProto, target: int) -> CompatReport:
    import onnx

    from onnxbridge.graph import _opset

    newest = onnx.defs.onnx_opset_version()
    if not _opset.OLDEST <= target <= newest:
        raise InputError(
            f"opset={target}: expected an int from {_opset.OLDEST} to {newest} (what onnx converts between)."
        )
    report = CompatReport(f"opset {target}")
    report.checked = [
        f"operators that did not exist yet at opset {target}",
        f"onnx's version converter taking the model to opset {target} (tried on a copy)",
    ]
    report.not_checked = ["the converted model's outputs (art.with_opset validates them)"]
    missing = _opset.missing_at(model, target)
    for op, since in sorted(missing.items()):
        nodes = tuple(n.name for n in model.graph.node if n.op_type == op and n.domain in ("", "ai.onnx"))
        report.findings.append(
            CompatFinding(
                f"{op} first exists at opset {since}",
                f"use with_opset({max(missing.values())}) or later, or re-export with opset={target}",
                op,
                "ai.onnx",
                nodes,
            )
        )
    if missing:
        return report
    try:
        _, notes = _opset.convert_opset(model, target)
    except OnnxBridgeError as err:
        report.findings.append(CompatFinding(first_line(err), f"re-export the source model with opset={target}"))
    else:
        report.notes = notes
    return report
