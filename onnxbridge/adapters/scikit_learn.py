"""Classic ML: scikit-learn estimators and pipelines, LightGBM and XGBoost, through skl2onnx.

What this adapter does for the user, beyond calling ``skl2onnx.convert_sklearn``:

* float32 inputs by default (what onnxruntime runs fastest), ``precision="float64"`` on request;
* a pandas DataFrame becomes one input per column, named after the columns;
* classifiers give plain arrays, ``label`` and ``probabilities`` (no ZipMap);
* LightGBM and XGBoost converters from onnxmltools are registered with skl2onnx on first use,
  so they work alone and as the last step of a pipeline;
* opsets per domain that skl2onnx, onnx and the installed onnxruntime all support;
* skl2onnx 1.20 with onnx 1.23 fails on HistGradientBoosting ("Expected an int, got a
  boolean"); :func:`_skl2onnx_compat` fixes the attribute values it passes to onnx.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxbridge import _graph, _runtime
from onnxbridge._adapter import Exported, ExportRequest, Feeds, check_options
from onnxbridge._axes import DynamicAxes
from onnxbridge._deps import require
from onnxbridge._errors import ExportError, InputError, UnsupportedModelError, first_line

_OPTIONS = ("precision", "options")
_PRECISIONS = {"float32": np.float32, "float64": np.float64}
_HOW_TO_REGISTER = (
    "Register a converter with skl2onnx (skl2onnx.update_registered_converter(MyEstimator, alias, "
    "shape_calculator, converter)), or an adapter for it with onnxbridge.register_adapter(...)."
)


def _sklearn() -> Any:
    return require("sklearn", purpose="Exporting a scikit-learn model", extra="sklearn")


class SklearnAdapter:
    """Exports scikit-learn estimators and pipelines (LightGBM and XGBoost included).

    Options (keyword arguments of :func:`onnxbridge.export`):
        precision: ``"float32"`` (default) or ``"float64"`` for the numeric inputs and, where
            the converters support it, the computation.
        options: skl2onnx converter options, e.g. ``{id(model): {"raw_scores": True}}``.
    """

    framework = "sklearn"
    module_roots = ("sklearn", "lightgbm", "xgboost", "imblearn")

    def accepts(self, model: object) -> bool:
        """A scikit-learn estimator (LightGBM and XGBoost's scikit-learn API included)."""
        return isinstance(model, _sklearn().base.BaseEstimator)

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Convert with skl2onnx after checking the model is fitted and the sample fits it."""
        sklearn = _sklearn()
        skl2onnx = require("skl2onnx", purpose="Converting a scikit-learn model", extra="sklearn")
        check_options(request.options, _OPTIONS, "scikit-learn")
        precision = request.options.get("precision", "float32")
        if precision not in _PRECISIONS:
            raise InputError(f"precision={precision!r}: expected 'float32' or 'float64'.")
        try:
            sklearn.utils.validation.check_is_fitted(model)
        except sklearn.exceptions.NotFittedError as err:
            raise InputError(
                f"This {type(model).__name__} is not fitted yet. Call fit(X, y) before exporting it."
            ) from err
        _register_boosters(model)
        table = _Table.from_sample(model, request.sample, np.dtype(_PRECISIONS[precision]), request.input_names)
        _check_axes(request.dynamic_axes)
        opsets = _opsets(skl2onnx, request.opset)
        options = dict(request.options.get("options", {}))
        final = _final_estimator(model)
        if sklearn.base.is_classifier(final):
            options.setdefault(id(final), {}).setdefault("zipmap", False)
        notes: list[str] = []
        proto = _convert(skl2onnx, model, table, opsets, options, notes)
        out_names = _rename_outputs(proto, request.output_names)
        axes: DynamicAxes = {name: {0: "batch"} for name in [*table.names, *out_names]}
        fixed = _graph.declare_axes(proto, axes)
        if fixed:
            raise ExportError("skl2onnx fixed the batch axis: " + "; ".join(fixed))
        sample = table.feeds(request.sample) if request.sample is not None else None
        reference = _Reference(model, table, proto)
        notes.insert(0, f"precision {precision}: numeric inputs are {table.float_dtype.name}")
        if precision == "float32":
            notes[0] += "; pass precision='float64' if tree thresholds or large feature values drift"
        return Exported(
            model=proto,
            framework="sklearn",
            framework_version=_versions(model, sklearn),
            exporter=f"skl2onnx {skl2onnx.__version__}",
            dynamic_axes=axes,
            sample=sample,
            reference=reference if reference.kind else None,
            reference_outputs=reference(sample) if sample is not None and reference.kind else None,
            notes=notes,
            properties={"precision": precision},
        )


# -- inputs ---------------------------------------------------------------------------------------
@dataclass
class _Table:
    """How the sample maps to graph inputs: one matrix, or one input per DataFrame column."""

    names: list[str]  # graph input names
    dtypes: list[np.dtype[Any]]  # per graph input
    n_features: int
    float_dtype: np.dtype[Any]
    columns: list[Any] | None = None  # DataFrame columns, by graph input
    column_dtypes: list[Any] | None = None  # the DataFrame's own dtypes, to rebuild it

    @classmethod
    def from_sample(
        cls, model: Any, sample: Any, float_dtype: np.dtype[Any], input_names: Sequence[str] | None
    ) -> _Table:
        expected = getattr(model, "n_features_in_", None)
        if sample is None:
            if expected is None:
                raise InputError(f"Exporting a {type(model).__name__} needs a sample (a 2-D array or a DataFrame).")
            return cls._matrix(int(expected), float_dtype, input_names)
        if _is_frame(sample):
            if expected is not None and sample.shape[1] != expected:
                raise InputError(
                    f"The sample DataFrame has {sample.shape[1]} columns but the model was fitted on {expected}. "
                    "Pass rows with the same columns used for fit()."
                )
            columns = list(sample.columns)
            names = [str(c) for c in columns] if input_names is None else list(input_names)
            if len(names) != len(columns):
                raise InputError(f"input_names has {len(names)} names but the DataFrame has {len(columns)} columns.")
            dtypes = [float_dtype if _numeric(sample[c].dtype) else np.dtype(object) for c in columns]
            return cls(names, dtypes, len(columns), float_dtype, columns, [sample[c].dtype for c in columns])
        array = np.asarray(sample)
        if array.ndim != 2:
            raise InputError(
                f"The sample has shape {array.shape}; scikit-learn models take 2-D input (rows x features). "
                "Reshape it, e.g. x.reshape(1, -1) for one row."
            )
        if expected is not None and array.shape[1] != expected:
            raise InputError(
                f"The sample has {array.shape[1]} features but the model was fitted on {expected}. "
                "Pass rows with the same features used for fit()."
            )
        if not _numeric(array.dtype):
            raise InputError(
                f"The sample has dtype {array.dtype}; a plain array must be numeric. Pass a pandas DataFrame for "
                "string columns (each becomes its own input)."
            )
        return cls._matrix(array.shape[1], float_dtype, input_names)

    @classmethod
    def _matrix(cls, n: int, float_dtype: np.dtype[Any], input_names: Sequence[str] | None) -> _Table:
        if input_names is not None and len(input_names) != 1:
            raise InputError(f"input_names has {len(input_names)} names but an array sample is one input.")
        name = input_names[0] if input_names else "input"
        return cls([name], [float_dtype], n, float_dtype)

    def initial_types(self) -> list[tuple[str, Any]]:
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

        numeric = FloatTensorType if self.float_dtype == np.float32 else DoubleTensorType
        width = 1 if self.columns is not None else self.n_features
        return [
            (name, numeric([None, width]) if dtype.kind == "f" else StringTensorType([None, width]))
            for name, dtype in zip(self.names, self.dtypes, strict=True)
        ]

    def feeds(self, sample: Any) -> Feeds:
        if self.columns is None:
            return {self.names[0]: np.asarray(sample).astype(self.float_dtype)}
        return {
            name: sample[column].to_numpy().astype(dtype).reshape(-1, 1)
            for name, column, dtype in zip(self.names, self.columns, self.dtypes, strict=True)
        }

    def source_input(self, feeds: Feeds) -> Any:
        """What the estimator itself takes: the matrix, or the DataFrame rebuilt with its dtypes."""
        if self.columns is None:
            return feeds[self.names[0]]
        import pandas as pd

        assert self.column_dtypes is not None
        return pd.DataFrame(
            {
                column: pd.Series(feeds[name][:, 0]).astype(dtype)
                for name, column, dtype in zip(self.names, self.columns, self.column_dtypes, strict=True)
            }
        )


def _is_frame(sample: Any) -> bool:
    return type(sample).__module__.startswith("pandas") and hasattr(sample, "columns")


def _numeric(dtype: Any) -> bool:
    return getattr(dtype, "kind", "O") in "biuf"


def _check_axes(spec: Any) -> None:
    if spec is None or spec == "batch":
        return
    if isinstance(spec, dict) and all(
        (list(axes) == [0]) if not isinstance(axes, dict) else (set(axes) == {0}) for axes in spec.values()
    ):
        return
    raise InputError(
        f"dynamic_axes={spec!r}: tabular models have a dynamic batch axis (axis 0) and a fixed number of "
        "features; nothing else can vary. Leave dynamic_axes out."
    )


# -- conversion -----------------------------------------------------------------------------------
def _opsets(skl2onnx: Any, requested: int | None) -> dict[str, int]:
    import onnx

    tested = int(getattr(skl2onnx, "__max_supported_opset__", onnx.defs.onnx_opset_version()))
    main = _runtime.choose_opset(requested, preferred=tested, converter=f"skl2onnx {skl2onnx.__version__}")
    return {"": main, "ai.onnx.ml": _runtime.max_opset("ai.onnx.ml")}


def _final_estimator(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _convert(
    skl2onnx: Any, model: Any, table: _Table, opsets: dict[str, int], options: dict[Any, Any], notes: list[str]
) -> Any:
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    double = table.float_dtype == np.float64
    while True:
        try:
            with _skl2onnx_compat(double):
                proto = skl2onnx.convert_sklearn(
                    model, initial_types=table.initial_types(), target_opset=opsets, options=options or None
                )
            break
        except (MissingShapeCalculator, MissingConverter) as err:
            missing = _unregistered(model)
            raise UnsupportedModelError(
                f"skl2onnx has no converter for {', '.join(missing) or type(model).__name__}. {_HOW_TO_REGISTER}"
            ) from err
        except Exception as err:
            # onnxmltools' LightGBM/XGBoost converters know ai.onnx.ml only up to a version they name.
            asked = re.search(r"target_opset=\{'ai\.onnx\.ml': (\d+)\}", str(err))
            if asked and int(asked.group(1)) < opsets["ai.onnx.ml"]:
                opsets = {**opsets, "ai.onnx.ml": int(asked.group(1))}
                notes.append(f"ai.onnx.ml opset lowered to {opsets['ai.onnx.ml']}, the newest the converter supports")
                continue
            raise ExportError(
                f"skl2onnx could not convert this {type(model).__name__} (opsets {opsets}): {type(err).__name__}: "
                f"{first_line(err)}. Try another opset "
                "(opset=...) or precision='float32'."
            ) from err
    _fix_double_trees(proto)
    _fix_opset_imports(proto, opsets)
    return proto


def _unregistered(model: Any) -> list[str]:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    found = []
    for obj in [model, *model.get_params(deep=True).values()]:
        if hasattr(obj, "fit") and type(obj) not in sklearn_operator_name_map:
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            if name not in found:
                found.append(name)
    return found


def _fix_double_trees(proto: Any) -> None:
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


def _fix_opset_imports(proto: Any, ceilings: dict[str, int]) -> None:
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


_PATCH_LOCK = threading.Lock()
_TREE_OPS = {"TreeEnsembleRegressor", "TreeEnsembleClassifier"}
_TREE_DOUBLE_ATTRS = {"nodes_values", "nodes_hitrates", "base_values", "target_weights", "class_weights"}


@contextlib.contextmanager
def _skl2onnx_compat(double: bool = False) -> Iterator[None]:
    """What skl2onnx needs to run today, in one place.

    The node factory that skl2onnx's container uses is wrapped, for the conversion only:

    * skl2onnx 1.20 passes numpy booleans and integers inside attribute lists (for example
      ``class_ids`` of HistGradientBoosting's TreeEnsembleClassifier) to
      ``onnx.helper.make_node``, which onnx 1.23's protobuf refuses ("Expected an int, got a
      boolean"); they are passed as plain ints.
    * With ``double`` (``precision="float64"``), skl2onnx passes tree-ensemble thresholds and
      weights as plain float attributes, which ONNX stores as float32 (losing the precision
      asked for), and wires the node into double tensors, which onnxruntime refuses. They are
      passed as the ``*_as_tensor`` double tensors that ``ai.onnx.ml`` opset 3 defines, then
      :func:`_fix_double_trees` and :func:`_fix_opset_imports` make the graph's types and
      opset agree.
    """
    from onnx import numpy_helper
    from skl2onnx.common import _container

    with _PATCH_LOCK:
        original = _container.make_node

        def make_node(op_type: str, *args: Any, **attrs: Any) -> Any:
            attrs = {k: _plain(v) for k, v in attrs.items()}
            if double and op_type in _TREE_OPS:
                for key in _TREE_DOUBLE_ATTRS & set(attrs):
                    values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
            return original(op_type, *args, **attrs)

        _container.make_node = make_node
        try:
            yield
        finally:
            _container.make_node = original


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_, np.integer)):
        return int(value)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_, np.integer)) for v in value):
        return [int(v) if isinstance(v, (bool, np.bool_, np.integer)) else v for v in value]
    return value


def _register_boosters(model: Any) -> None:
    modules = {type(obj).__module__.split(".")[0] for obj in [model, *_steps(model)]}
    for library in sorted(modules & set(_BOOSTERS)):
        _register_booster(library)


def _steps(model: Any) -> list[Any]:
    try:
        return [v for v in model.get_params(deep=True).values() if hasattr(v, "fit")]
    except Exception:  # noqa: BLE001 - third-party estimators may not implement get_params fully
        return []


# library -> (classifier, regressor, onnxmltools converter module, function, skl2onnx alias prefix)
_BOOSTERS = {
    "lightgbm": (
        "LGBMClassifier",
        "LGBMRegressor",
        "lightgbm.operator_converters.LightGbm",
        "convert_lightgbm",
        "LightGbm",
    ),
    "xgboost": ("XGBClassifier", "XGBRegressor", "xgboost.operator_converters.XGBoost", "convert_xgboost", "XGBoost"),
}


@functools.cache
def _register_booster(library: str) -> None:
    """Register onnxmltools' converter for a boosting library's scikit-learn API with skl2onnx."""
    classifier, regressor, converter_module, function, alias = _BOOSTERS[library]
    purpose = f"Exporting a {library} model"
    module = require(library, purpose=purpose, extra=library)
    converter = getattr(require(f"onnxmltools.convert.{converter_module}", purpose=purpose, extra=library), function)
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        getattr(module, classifier),
        f"{alias}{classifier}",
        calculate_linear_classifier_output_shapes,
        converter,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        getattr(module, regressor), f"{alias}{regressor}", calculate_linear_regressor_output_shapes, converter
    )


def _rename_outputs(proto: Any, names: Sequence[str] | None) -> list[str]:
    current = [o.name for o in proto.graph.output]
    if names is None:
        return current
    if len(names) != len(current):
        raise InputError(f"output_names has {len(names)} names but the model has {len(current)} outputs: {current}.")
    _graph.rename_values(proto.graph, {old: new for old, new in zip(current, names, strict=True) if old != new})
    return list(names)


def _versions(model: Any, sklearn: Any) -> str:
    version = f"scikit-learn {sklearn.__version__}"
    for library in sorted({type(obj).__module__.split(".")[0] for obj in [model, *_steps(model)]} - {"sklearn"}):
        module = require(library, purpose="Reading a library version")
        version += f", {library} {getattr(module, '__version__', 'unknown')}"
    return version


class _Reference:
    """The estimator's own predict / predict_proba / transform, shaped like the ONNX outputs."""

    def __init__(self, model: Any, table: _Table, proto: Any) -> None:
        self.model, self.table = model, table
        self.out_names = [o.name for o in proto.graph.output]
        self.ranks = [len(o.type.tensor_type.shape.dim) for o in proto.graph.output]
        sklearn = _sklearn()
        final = _final_estimator(model)
        if sklearn.base.is_classifier(final) and len(self.out_names) == 2:
            self.kind = "classifier"
        elif sklearn.base.is_regressor(final) and len(self.out_names) == 1:
            self.kind = "regressor"
        elif hasattr(model, "transform") and not hasattr(model, "predict") and len(self.out_names) == 1:
            self.kind = "transformer"
        else:
            self.kind = ""  # e.g. clusterers: no single ground truth to compare with

    def __call__(self, feeds: Feeds) -> Feeds:
        x = self.table.source_input(feeds)
        if self.kind == "classifier":
            values = [self.model.predict(x), self.model.predict_proba(x)]
        elif self.kind == "regressor":
            values = [self.model.predict(x)]
        else:
            out = self.model.transform(x)
            values = [out.toarray() if hasattr(out, "toarray") else out]
        shaped = [
            np.asarray(v)[:, None] if np.ndim(v) == 1 and rank == 2 else np.asarray(v)
            for v, rank in zip(values, self.ranks, strict=True)
        ]
        return dict(zip(self.out_names, shaped, strict=True))
