"""Classic ML: scikit-learn estimators and pipelines, LightGBM and XGBoost, through skl2onnx.

What this adapter does for the user, beyond calling ``skl2onnx.convert_sklearn``:

* float32 inputs by default (what onnxruntime runs fastest), ``precision="float64"`` on request;
* a pandas DataFrame becomes one input per column, named after the columns;
* classifiers give plain arrays, ``label`` and ``probabilities`` (no ZipMap);
* LightGBM and XGBoost converters from onnxmltools are registered with skl2onnx on first use,
  so they work alone and as the last step of a pipeline;
* opsets per domain that skl2onnx, onnx and the installed onnxruntime all support;
* skl2onnx 1.20 with onnx 1.23 fails on HistGradientBoosting ("Expected an int, got a
  boolean"); :mod:`._skl2onnx_fixes` fixes the attribute values it passes to onnx.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxbridge.adapters import (
    _skl2onnx_fixes,
    _sklearn_converters,
    _sklearn_hist_gbt,
    _sklearn_outputs,
    _sklearn_rows,
)
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import ExportError, InputError, UnsupportedModelError, first_line
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest, check_options
from onnxbridge.graph import _graph
from onnxbridge.running import _capabilities

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
        parts = _parts(model)
        precision, why = _precision(parts, request.options.get("precision"))
        try:
            sklearn.utils.validation.check_is_fitted(model)
        except sklearn.exceptions.NotFittedError as err:
            raise InputError(
                f"This {type(model).__name__} is not fitted yet. Call fit(X, y) before exporting it."
            ) from err
        _refuse_unrepresentable(parts)
        _register_boosters(parts)
        _sklearn_converters.register()
        table = _Table.from_sample(model, request.sample, np.dtype(_PRECISIONS[precision]), request.input_names)
        _check_axes(request.dynamic_axes)
        opsets = _opsets(skl2onnx, request.opset)
        options = _sklearn_outputs.converter_options(model, request.options.get("options", {}))
        notes: list[str] = []
        categorical = any(_sklearn_hist_gbt.uses_categories(part) for part in parts)
        proto = _convert(skl2onnx, model, table, opsets, options, notes, categorical=categorical)
        redeclared = _skl2onnx_fixes.fix_declared_outputs(proto, functools.partial(table.rows, request.sample))
        if redeclared:
            notes.append(f"output shapes redeclared as onnxruntime computes them: {', '.join(redeclared)}")
        outputs = _sklearn_outputs.plan(model, len(proto.graph.output))
        _sklearn_outputs.name_scores(proto, model, outputs)
        out_names = _rename_outputs(proto, request.output_names)
        axes: DynamicAxes = {name: {0: "batch"} for name in [*table.names, *out_names]}
        fixed = _graph.declare_axes(proto, axes)
        if fixed:
            raise ExportError("skl2onnx fixed the batch axis: " + "; ".join(fixed))
        sample = table.feeds(request.sample) if request.sample is not None else None
        reference = _sklearn_outputs.Reference(model, table.source_input, proto, outputs) if outputs.kind else None
        notes.insert(0, f"precision {precision}: numeric inputs are {table.float_dtype.name}{why}")
        ours = sorted({type(part).__name__ for part in parts} & set(_sklearn_converters.added()))
        if ours:
            notes.append(f"converted with onnxbridge's own converter for {', '.join(ours)} (skl2onnx has none)")
        if categorical:
            notes.append(
                "categorical features converted by onnxbridge (category codes and category-set splits in an "
                "ai.onnx.ml opset-5 TreeEnsemble): skl2onnx alone ignores them"
            )
        extra: dict[str, Feeds] = {}
        if outputs.kind:
            compared = ", ".join(
                f"{name} with {method}()" for name, method in zip(out_names, outputs.methods, strict=True)
            )
            notes.append(f"validation compares {compared}")
            if table.columns is None and request.sample is not None:
                rows = _sklearn_rows.validation_rows(model, request.sample)
                extra = {name: table.feeds(values) for name, values in rows.items()}
                if rows:
                    notes.append(f"validation also compares {', '.join(rows)}, besides the sample")
                if _sklearn_rows.tie_note(rows):
                    notes.append(_sklearn_rows.tie_note(rows))
        else:
            notes.append(f"validation has no {type(model).__name__} method to compare these outputs with")
        return Exported(
            model=proto,
            framework="sklearn",
            framework_version=_versions(parts, sklearn),
            exporter=f"skl2onnx {skl2onnx.__version__}",
            dynamic_axes=axes,
            sample=sample,
            reference=reference,
            reference_outputs=reference.on_sample(sample) if sample is not None and reference else None,
            notes=notes,
            properties={"precision": precision},
            labels=_sklearn_outputs.class_labels(model, outputs, out_names),
            validation_samples=extra,
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

    def rows(self, sample: Any, n: int) -> Feeds:
        """``n`` rows of inputs: the sample's first row repeated, or zeros (empty strings) without one."""
        if sample is not None:
            return {name: np.repeat(value[:1], n, axis=0) for name, value in self.feeds(sample).items()}
        width = 1 if self.columns is not None else self.n_features
        return {
            name: np.zeros((n, width), dtype) if dtype.kind == "f" else np.full((n, width), "", dtype=object)
            for name, dtype in zip(self.names, self.dtypes, strict=True)
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


# -- precision and what cannot be converted -------------------------------------------------------
def _precision(parts: list[Any], requested: Any) -> tuple[str, str]:
    """The precision to export with, and why when onnxbridge chose it."""
    if requested is not None:
        if requested not in _PRECISIONS:
            raise InputError(f"precision={requested!r}: expected 'float32' or 'float64'.")
        return requested, ""
    exact = _needs_float64(parts)
    if exact:
        return "float64", f" (chosen because {exact}; precision='float32' overrides it)"
    return "float32", "; pass precision='float64' if tree thresholds or large feature values drift"


def _needs_float64(parts: list[Any]) -> str:
    """Why a model is only exact with float64 inputs ('' when float32 serves)."""
    for step in parts:
        name = type(step).__name__
        if name == "QuantileTransformer":
            return "QuantileTransformer interpolates between tied quantiles, which float32 inputs shift"
        normalization = getattr(step, "normalization_", None)
        if name == "Nystroem" and normalization is not None and np.linalg.cond(normalization) > 1e3:
            cond = np.linalg.cond(normalization)
            return f"Nystroem's normalization is ill-conditioned (condition number {cond:.1g}), which float32 amplifies"
        categories = getattr(step, "categories_", None)
        if categories is not None and any(np.asarray(c).dtype.kind == "f" for c in categories):
            return f"{name} has float categories, which float32 inputs no longer match"
    return ""


def _refuse_unrepresentable(parts: list[Any]) -> None:
    for step in parts:
        reason = _sklearn_converters.unsupported_reason(step)
        if reason:
            raise UnsupportedModelError(f"{type(step).__name__} cannot be exported to ONNX: {reason}")


# -- conversion -----------------------------------------------------------------------------------
def _opsets(skl2onnx: Any, requested: int | None) -> dict[str, int]:
    import onnx

    tested = int(getattr(skl2onnx, "__max_supported_opset__", onnx.defs.onnx_opset_version()))
    main = _capabilities.choose_opset(requested, preferred=tested, converter=f"skl2onnx {skl2onnx.__version__}")
    return {"": main, "ai.onnx.ml": _capabilities.max_opset("ai.onnx.ml")}


def _convert(
    skl2onnx: Any,
    model: Any,
    table: _Table,
    opsets: dict[str, int],
    options: dict[Any, Any],
    notes: list[str],
    *,
    categorical: bool,
) -> Any:
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    double = table.float_dtype == np.float64
    while True:
        try:
            with _skl2onnx_fixes.compat(double, categorical_trees=categorical):
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
    _skl2onnx_fixes.fix_double_trees(proto)
    _skl2onnx_fixes.fix_opset_imports(proto, opsets)
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


def _register_boosters(parts: list[Any]) -> None:
    modules = {type(obj).__module__.split(".")[0] for obj in parts}
    for library in sorted(modules & set(_BOOSTERS)):
        _register_booster(library)


def _parts(model: Any) -> list[Any]:
    """The model and every estimator inside it (pipeline steps, meta-estimators' estimators)."""
    try:
        return [model, *(v for v in model.get_params(deep=True).values() if hasattr(v, "fit"))]
    except Exception:  # noqa: BLE001 - third-party estimators may not implement get_params fully
        return [model]


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


def _versions(parts: list[Any], sklearn: Any) -> str:
    version = f"scikit-learn {sklearn.__version__}"
    for library in sorted({type(obj).__module__.split(".")[0] for obj in parts} - {"sklearn"}):
        module = require(library, purpose="Reading a library version")
        version += f", {library} {getattr(module, '__version__', 'unknown')}"
    return version
