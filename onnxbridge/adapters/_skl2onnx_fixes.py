"""What skl2onnx 1.20 needs to convert today's scikit-learn models correctly, in one place.

Each function names the failure it works around and the versions it was seen with (skl2onnx
1.20, onnx 1.23, onnxruntime 1.31-1.32), so it can be dropped when skl2onnx handles the case.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_PATCH_LOCK = threading.Lock()
ML_OPSET_FOR_CATEGORIES = 5  # ai.onnx.ml TreeEnsemble with BRANCH_MEMBER splits
_TREE_OPS = {"TreeEnsembleRegressor", "TreeEnsembleClassifier"}
_TREE_DOUBLE_ATTRS = {"nodes_values", "nodes_hitrates", "base_values", "target_weights", "class_weights"}


def fix_double_trees(proto: Any) -> None:
    """Give double-precision tree ensembles the float outputs ONNX defines, cast back to double.

    ``ai.onnx.ml`` TreeEnsembleRegressor/Classifier accept double thresholds (``*_as_tensor``)
    but always output float scores; skl2onnx 1.20 wires them straight into double tensors.
    Each such output is renamed and followed by a Cast to double, so the graph's types hold.
    """
    from onnx import TensorProto, helper

    declared = {v.name: v.type.tensor_type.elem_type for v in [*proto.graph.output, *proto.graph.value_info]}
    nodes = list(proto.graph.node)
    rebuilt = []
    for node in nodes:
        rebuilt.append(node)
        if node.op_type not in _TREE_OPS or not any(a.name.endswith("_as_tensor") for a in node.attribute):
            continue
        index = 0 if node.op_type == "TreeEnsembleRegressor" else 1
        original = node.output[index]
        if declared.get(original, TensorProto.DOUBLE) != TensorProto.DOUBLE:
            continue  # skl2onnx kept this path in float (e.g. random forest probabilities)
        node.output[index] = f"{original}_float32"
        rebuilt.append(
            helper.make_node(
                "Cast", [node.output[index]], [original], to=TensorProto.DOUBLE, name=f"{node.name}_to_double"
            )
        )
    if len(rebuilt) != len(nodes):
        del proto.graph.node[:]
        proto.graph.node.extend(rebuilt)


def fix_opset_imports(proto: Any, ceilings: dict[str, int]) -> None:
    """Stamp each domain with the opset its nodes really need.

    skl2onnx 1.20 lists a domain twice at times, and stamps ``ai.onnx.ml`` version 1 on
    double-precision tree ensembles whose ``*_as_tensor`` attributes exist only from version 3,
    which onnxruntime then refuses ("Type (tensor(double)) ... does not match"). For each node,
    find the lowest version (up to what we asked skl2onnx for) whose schema has all of the node's
    attributes, and stamp the highest of those.
    """
    import onnx

    stamped: dict[str, int] = {}
    for entry in proto.opset_import:
        stamped[entry.domain] = max(stamped.get(entry.domain, 0), entry.version)
    for node in proto.graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        if domain not in stamped or domain not in ceilings:
            continue
        names = {a.name for a in node.attribute}
        for version in range(stamped[domain], max(stamped[domain], ceilings[domain]) + 1):
            try:
                schema = onnx.defs.get_schema(node.op_type, version, domain)
            except onnx.defs.SchemaError:
                break
            if names <= set(schema.attributes):
                stamped[domain] = version
                break
    del proto.opset_import[:]
    for domain, version in stamped.items():
        proto.opset_import.add(domain=domain, version=version)


@contextlib.contextmanager
def compat(double: bool = False, categorical_trees: bool = False) -> Iterator[None]:
    """What skl2onnx needs to run today, in one place.

    The node factory that skl2onnx's container uses is wrapped, for the conversion only:

    * skl2onnx 1.20 passes numpy booleans and integers inside attribute lists (for example
      ``class_ids`` of HistGradientBoosting's TreeEnsembleClassifier) to
      ``onnx.helper.make_node``, which onnx 1.23's protobuf refuses ("Expected an int, got a
      boolean"); they are passed as plain ints.
    * skl2onnx's algebra checks that every node of a converter's expression was added by
      walking the expression as a tree, revisiting shared sub-expressions every time: the
      QuantileTransformer converter takes ~50 s on iris (85 million calls). The same check
      runs once per node (:func:`_verify_once`), which takes milliseconds.
    * skl2onnx refuses a model that uses ``ai.onnx.ml`` past opset 3, which it does not write
      itself; onnxbridge's converter for categorical HistGradientBoosting writes opset 5's
      ``TreeEnsemble`` (category splits), which onnxruntime runs, so with ``categorical_trees``
      the ceiling is raised to it. Not otherwise: onnxmltools' LightGBM and XGBoost converters
      rely on that refusal to lower the opset to one where their (older) operators exist.
    * With ``double`` (``precision="float64"``), skl2onnx passes tree-ensemble thresholds and
      weights as plain float attributes, which ONNX stores as float32 (losing the precision
      asked for), and wires the node into double tensors, which onnxruntime refuses. They are
      passed as the ``*_as_tensor`` double tensors that ``ai.onnx.ml`` opset 3 defines, then
      :func:`fix_double_trees` and :func:`fix_opset_imports` make the graph's types and
      opset agree.
    """
    from onnx import numpy_helper
    from skl2onnx.algebra.onnx_operator import OnnxOperator
    from skl2onnx.common import _container, _topology

    with _PATCH_LOCK:
        original = _container.make_node
        original_verify = OnnxOperator._verify_add_to_
        original_ceiling = _topology.get_default_opset_for_domain

        def ceiling(domain: str) -> Any:
            known = original_ceiling(domain)
            if domain == "ai.onnx.ml" and categorical_trees:
                return max(known or 0, ML_OPSET_FOR_CATEGORIES)
            return known

        def make_node(op_type: str, *args: Any, **attrs: Any) -> Any:
            attrs = {k: _plain(v) for k, v in attrs.items()}
            if double and op_type in _TREE_OPS:
                for key in _TREE_DOUBLE_ATTRS & set(attrs):
                    values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
            return original(op_type, *args, **attrs)

        _container.make_node = make_node
        OnnxOperator._verify_add_to_ = _verify_once
        _topology.get_default_opset_for_domain = ceiling
        try:
            yield
        finally:
            _container.make_node = original
            OnnxOperator._verify_add_to_ = original_verify
            _topology.get_default_opset_for_domain = original_ceiling


def _verify_once(self: Any) -> None:
    """skl2onnx's ``OnnxOperator._verify_add_to_`` (every node was added), visiting each node once."""
    seen: set[int] = set()
    stack = [self]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.state is None:
            raise RuntimeError(f"Graph was not produced for operator {type(node).__name__!r}: {node}.")
        stack.extend(i for i in node.inputs if hasattr(i, "_verify_add_to_"))


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_, np.integer)):
        return int(value)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_, np.integer)) for v in value):
        return [int(v) if isinstance(v, (bool, np.bool_, np.integer)) else v for v in value]
    return value


def fix_declared_outputs(proto: Any, feeds: Callable[[int], dict[str, np.ndarray]]) -> list[str]:
    """Declare each output with the shape onnxruntime really gives it; return what was redeclared.

    skl2onnx 1.20 declares some outputs wrongly: TfidfTransformer's output with a batch of 1,
    PLSRegression's ``(N, 1)`` prediction as ``(N, n_features)`` (``onnx.checker`` then refuses
    the graph), and QuadraticDiscriminantAnalysis's ``label`` as ``(1, N)``, which it also
    computes (the labels come out as one row). When a declaration looks wrong (a fixed first
    axis, or strict shape inference disagrees), the graph runs on ``feeds(2)`` and ``feeds(3)``:
    the first axis becomes ``batch``, the others the size seen, and a ``(1, N)`` output gets a
    final Reshape to ``(N,)``.
    """
    import onnx

    suspicious = any(_fixed_first_axis(value) for value in proto.graph.output)
    if not suspicious:
        try:
            onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        except onnx.shape_inference.InferenceError:
            suspicious = True
    if not suspicious:
        return []
    import onnxruntime

    sess = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    two, three = (sess.run(None, feeds(n)) for n in (2, 3))
    redeclared = []
    for index, (a, b) in enumerate(zip(two, three, strict=True)):
        value = proto.graph.output[index]
        varying = [i for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)) if x != y]
        want: list[int | str] = ["batch", *a.shape[1:]]
        if varying and varying != [0] and a.size == 2:  # the rows came out along another axis: (1, N)
            _flatten_output(proto, value)
            want = ["batch"]
        shape = value.type.tensor_type.shape
        have = [d.dim_param or d.dim_value for d in shape.dim]
        if len(have) == len(want) and all(h == w or isinstance(h, str) for h, w in zip(have, want, strict=True)):
            continue
        shape.ClearField("dim")
        for size in want:
            dim = shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
        redeclared.append(value.name)
    stale = set(redeclared)
    kept = [v for v in proto.graph.value_info if v.name not in stale]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    return redeclared


def _flatten_output(proto: Any, value: Any) -> None:
    """Give ``value`` one row per input row: Reshape(-1) at the end of the graph, same name."""
    from onnx import helper

    inner = f"{value.name}_rows_last"
    for node in proto.graph.node:
        node.output[:] = [inner if out == value.name else out for out in node.output]
        node.input[:] = [inner if name == value.name else name for name in node.input]
    shape = helper.make_tensor(f"{value.name}_flat", 7, [1], [-1])
    proto.graph.initializer.append(shape)
    proto.graph.node.append(helper.make_node("Reshape", [inner, shape.name], [value.name], name=f"{value.name}_flat"))


def _fixed_first_axis(value: Any) -> bool:
    dims = value.type.tensor_type.shape.dim
    return bool(dims) and not dims[0].dim_param and dims[0].dim_value > 0
