"""LightGBM boosters as ``lightgbm.train`` returns them and LightGBM model files hold them.

The scikit-learn adapter converts ``LGBMClassifier`` and ``LGBMRegressor``. Training scripts that
use LightGBM's native API get a ``lightgbm.Booster`` instead, and model registries keep the text
model it saves (``booster.save_model("model.txt")``). This adapter converts a booster with
onnxmltools' LightGBM converter and validates it against ``Booster.predict``:

* ``binary`` and ``multiclass`` objectives: ``label`` and ``probabilities`` (``predict``'s
  probabilities; for ``binary`` the two columns ``1 - p`` and ``p``);
* every other objective: ``variable``, ``predict``'s value per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import InputError
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest, check_options
from onnxbridge.graph import _graph

# The newest default-domain opset onnxmltools' LightGBM converter writes; newer ones are converted to.
CONVERTER_OPSET = 15
_CLASSIFIERS = ("binary", "multiclass", "multiclassova")


class LightGBMAdapter:
    """Exports ``lightgbm.Booster`` objects (``lightgbm.train``, ``lightgbm.Booster(model_file=...)``)."""

    framework = "lightgbm"
    module_roots = ("lightgbm",)

    def accepts(self, model: object) -> bool:
        """A ``lightgbm.Booster`` (the scikit-learn API's estimators go to the scikit-learn adapter)."""
        return type(model).__module__.startswith("lightgbm") and type(model).__name__ == "Booster"

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Convert with onnxmltools; check the sample's width against the booster's features."""
        lightgbm = require("lightgbm", purpose="Exporting a LightGBM booster", extra="lightgbm")
        onnxmltools = require("onnxmltools", purpose="Exporting a LightGBM booster", extra="lightgbm")
        from onnxmltools.convert.common.data_types import FloatTensorType

        check_options(request.options, (), "LightGBM")
        if not _batch_only(request.dynamic_axes):
            raise InputError(
                f"dynamic_axes={request.dynamic_axes!r}: a booster takes rows of a fixed number of features; only "
                "the batch axis varies, and it always does. Leave dynamic_axes out."
            )
        width = model.num_feature()
        rows = _rows(request.sample, width)
        objective = str(model.dump_model().get("objective", "regression")).split()[0]
        classifier = objective in _CLASSIFIERS
        input_name = (request.input_names or ["input"])[0]
        opset = min(request.opset or CONVERTER_OPSET, CONVERTER_OPSET)
        proto = onnxmltools.convert_lightgbm(
            model, initial_types=[(input_name, FloatTensorType([None, width]))], zipmap=False, target_opset=opset
        )
        notes = [f"objective {objective}: " + ("label and probabilities" if classifier else "one value per row")]
        if request.opset and request.opset > CONVERTER_OPSET:
            from onnxbridge.graph import _opset

            proto, converted = _opset.convert_opset(proto, request.opset)
            notes += converted
        names = list(request.output_names or (["label", "probabilities"] if classifier else ["variable"]))
        current = [o.name for o in proto.graph.output]
        if len(names) != len(current):
            raise InputError(
                f"output_names has {len(names)} names but the model has {len(current)} outputs: {current}."
            )
        _graph.rename_values(proto.graph, dict(zip(current, names, strict=True)))
        for output in proto.graph.output:  # the converter declares the labels' batch axis as 1
            dims = output.type.tensor_type.shape.dim
            if dims:
                dims[0].ClearField("dim_value")
        axes: DynamicAxes = {name: {0: "batch"} for name in [input_name, *names]}
        _graph.declare_axes(proto, axes)

        def reference(feeds: Feeds) -> Feeds:
            predicted = np.asarray(model.predict(feeds[input_name]))
            if not classifier:
                return {names[0]: predicted.reshape(-1, 1)}
            probabilities = np.column_stack([1 - predicted, predicted]) if predicted.ndim == 1 else predicted
            return {names[0]: probabilities.argmax(axis=1).astype(np.int64), names[1]: probabilities}

        sample = {input_name: rows}
        return Exported(
            model=proto,
            framework=self.framework,
            framework_version=f"lightgbm {lightgbm.__version__}",
            exporter=f"onnxmltools {onnxmltools.__version__}",
            dynamic_axes=axes,
            sample=sample,
            reference=reference,
            reference_outputs=reference(sample),
            notes=notes,
        )


def _batch_only(spec: Any) -> bool:
    """Whether ``dynamic_axes`` asks for the batch axis (axis 0) only, in any of its forms."""
    if spec is None or spec == "batch":
        return True
    return isinstance(spec, dict) and all(
        set(axes) == {0} if isinstance(axes, dict) else list(axes) == [0] for axes in spec.values()
    )


def _rows(sample: Any, width: int) -> np.ndarray:
    """The sample as float32 rows of ``width`` features, or an InputError saying what it should be."""
    try:
        rows = np.asarray(sample, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(f"The sample should be a numeric table of {width} features per row ({err}).") from err
    if rows.ndim != 2 or rows.shape[1] != width or rows.shape[0] == 0:
        raise InputError(
            f"The sample has shape {rows.shape}; this booster takes rows of {width} features: pass a "
            f"(rows, {width}) array, e.g. X_test[:2]."
        )
    return rows
