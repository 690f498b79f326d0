"""TensorFlow and Keras: Keras 3 (TensorFlow backend), tf_keras 2, tf.function, tf.Module, SavedModel.

Every kind of model is converted the same way: onnxbridge wraps it in a ``tf.function``
with an explicit, named ``tf.TensorSpec`` signature (``None`` on dynamic axes) and hands
that to ``tf2onnx.convert.from_function``. That route works for Keras 3, where
``tf2onnx.convert.from_keras`` 1.17 fails on many models (``KeyError: 'keras_tensor_N'``),
and it gives every kind of model the same input names, axes and checks.

Workarounds for tf2onnx live in :func:`_tf2onnx_fixes.tf2onnx_compat` and :func:`_tf2onnx_fixes.unconverted_ops`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.adapters import _tf2onnx_fixes
from onnxbridge.core._axes import DynamicAxes, normalize_dynamic_axes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import ExportError, InputError, ModelFileError, UnsupportedModelError, first_line
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest, check_options
from onnxbridge.graph import _graph
from onnxbridge.running import _capabilities
from onnxbridge.running._feeds import to_numpy

if TYPE_CHECKING:
    import onnx

_OPTIONS = ("signature", "large_model", "converter_kwargs")
_LARGE_MODEL_BYTES = 1_800_000_000  # past this, weights go through tf2onnx's external-data path
_UNNAMED = re.compile(r"^(keras_tensor|input_layer)(_\d+)?$")


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's import-time banner is noise here
    return require("tensorflow", purpose="Exporting a TensorFlow or Keras model", extra="tensorflow")


class TensorFlowAdapter:
    """Exports TensorFlow and Keras models through tf2onnx.

    Options (keyword arguments of :func:`onnxbridge.export`):
        signature: SavedModel signature to export (default ``"serving_default"``).
        large_model: Use tf2onnx's external-data path (default: when weights pass ~1.8 GB).
        converter_kwargs: Extra arguments for ``tf2onnx.convert.from_function``, e.g.
            ``{"custom_ops": {"MyOp": "ai.onnx.contrib"}}``.
    """

    framework = "tensorflow"
    module_roots = ("keras", "tf_keras", "tensorflow", "builtins", "pathlib")

    def accepts(self, model: object) -> bool:
        """Keras models and layers, tf.function, tf.Module, or a SavedModel directory."""
        if isinstance(model, (str, os.PathLike)):
            return Path(model).is_dir()
        if isinstance(model, (str, bytes, int, float, dict, list, tuple)):
            return False
        return _kind(_tf(), model) is not None

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Wrap the model in a signed tf.function and convert it with tf2onnx."""
        tf = _tf()
        tf2onnx = require("tf2onnx", purpose="Converting a TensorFlow model", extra="tensorflow")
        check_options(request.options, _OPTIONS, "TensorFlow")
        source = _source(tf, model, request.options.get("signature", "serving_default"))
        notes: list[str] = []
        sample = source.feeds(request.sample, notes)
        outputs = source.run(tf, sample) if sample is not None else None
        if outputs is None and source.declared is None:
            if not source.built:
                raise InputError(
                    f"This {source.kind} was never built (it has no input shape) and no sample was given. Pass a "
                    "sample shaped like real inputs, or give the model an input shape (keras.Input or model.build)."
                )
            raise InputError(
                f"Exporting a {source.kind} without an input signature needs a sample input to learn its input "
                "shapes and dtypes. Pass one, e.g. ob.export(fn, np.zeros((1, 8), np.float32))."
            )
        out_structure = outputs if outputs is not None else source.traced_outputs(tf)
        out_names = _output_names(tf, out_structure, source, request.output_names)
        user_names = _input_names(source.names, request.input_names)
        in_ranks = {user_names[n]: _rank(source, sample, n) for n in source.names}
        out_ranks = {name: len(shape) for name, shape in zip(out_names, _shapes(tf, out_structure), strict=True)}
        declared_mode = request.dynamic_axes is None and source.declared is not None
        if declared_mode:
            axes = _declared_axes(source, user_names)
        else:
            axes = normalize_dynamic_axes(request.dynamic_axes, in_ranks, out_ranks)
        specs = _specs(tf, source, sample, axes, user_names)
        opset = _choose_opset(tf2onnx, request.opset)
        proto = _convert(tf, tf2onnx, source, specs, opset, request.options, notes)
        if declared_mode and axes and all(d.get(0) == "batch" for d in axes.values()):
            axes.update(_batch_outputs(proto, out_names))  # outputs that follow the batch axis
        _finish(proto, [user_names[n] for n in source.names], out_names, axes)
        feeds = {user_names[n]: v for n, v in sample.items()} if sample is not None else None
        reference_outputs = dict(zip(out_names, _flat_numpy(tf, outputs), strict=True)) if outputs is not None else None
        return Exported(
            model=proto,
            framework="tensorflow",
            framework_version=_versions(tf, source),
            exporter=f"tf2onnx {tf2onnx.__version__} (from_function, {source.kind})",
            dynamic_axes=axes,
            sample=feeds,
            reference=_Reference(tf, source, user_names, out_names),
            reference_outputs=reference_outputs,
            notes=notes,
        )


# -- what kind of model this is -------------------------------------------------------------------
def _kind(tf: Any, model: object) -> str | None:
    roots = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    if "keras" in roots:
        import keras

        if isinstance(model, keras.Layer):
            return "Keras 3 model"
    if "tf_keras" in roots:
        import tf_keras

        if isinstance(model, tf_keras.layers.Layer):
            return "tf_keras model"
    if isinstance(model, tf.types.experimental.GenericFunction):
        return "tf.function"
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        return "concrete function"
    if isinstance(model, tf.Module) and callable(model):
        return "tf.Module"
    return None


@dataclass
class _Source:
    """A model reduced to: input names, how to call it, and what it declares."""

    kind: str
    names: list[str]  # inputs, in call order
    invoke: Callable[[list[Any]], Any]  # tensors in `names` order -> model outputs
    declared: dict[str, tuple[tuple[int | None, ...], str]] | None = None  # name -> (shape, dtype)
    output_names: list[str] | None = None
    keras: bool = False
    built: bool = True
    keep_alive: list[Any] = field(default_factory=list)

    def feeds(self, sample: Any, notes: list[str]) -> Feeds | None:
        """The sample as numpy arrays by input name (and cast to declared dtypes)."""
        if sample is None:
            return None
        if isinstance(sample, Mapping):
            unknown = sorted(str(k) for k in sample if k not in self.names)
            if self.declared is not None and unknown:
                raise InputError(
                    f"The sample has inputs {unknown} that the {self.kind} does not take; its inputs are {self.names}."
                )
            if self.declared is None:
                self.names = [str(k) for k in sample]
            missing = [n for n in self.names if n not in sample]
            if missing:
                raise InputError(f"The sample lacks inputs {missing}; the {self.kind} takes {self.names}.")
            feeds = {n: to_numpy(sample[n], n) for n in self.names}
        else:
            items = list(sample) if isinstance(sample, (tuple, list)) else [sample]
            if self.declared is None and not self.names:
                self.names = ["input"] if len(items) == 1 else [f"input_{i}" for i in range(len(items))]
            if len(items) != len(self.names):
                raise InputError(
                    f"The sample has {len(items)} input(s) but the {self.kind} takes {len(self.names)}: {self.names}. "
                    "Pass one array per input, in that order, or a dict by input name."
                )
            feeds = {n: to_numpy(v, n) for n, v in zip(self.names, items, strict=True)}
        for name, value in list(feeds.items()):
            want = self.declared[name][1] if self.declared is not None and name in self.declared else None
            if want is None and self.keras and value.dtype == np.float64:
                want = "float32"  # Keras computes in float32 (floatx) unless told otherwise
            if want is not None and value.dtype != np.dtype(want):
                feeds[name] = value.astype(want)
                notes.append(f"cast sample input {name!r} from {value.dtype} to {want}, the dtype the model declares")
            if self.declared is not None and name in self.declared:
                _check_shape(self.kind, name, feeds[name].shape, self.declared[name][0])
        return feeds

    def run(self, tf: Any, feeds: Feeds) -> Any:
        try:
            return self.invoke([tf.convert_to_tensor(feeds[n]) for n in self.names])
        except Exception as err:
            raise InputError(
                f"Calling the {self.kind} with the sample raised {type(err).__name__}: {str(err).strip()[:500]}. "
                "The sample must be a valid input for the model (shape, dtype, and number of inputs)."
            ) from err

    def traced_outputs(self, tf: Any) -> Any:
        assert self.declared is not None
        specs = [tf.TensorSpec(self.declared[n][0], self.declared[n][1]) for n in self.names]
        return tf.function(lambda *args: self.invoke(list(args))).get_concrete_function(*specs).structured_outputs


def _check_shape(kind: str, name: str, got: tuple[int, ...], declared: tuple[int | None, ...]) -> None:
    if len(got) != len(declared) or any(d is not None and d != g for g, d in zip(got, declared, strict=False)):
        shown = "(" + ", ".join("None" if d is None else str(d) for d in declared) + ")"
        raise InputError(
            f"Sample input {name!r} has shape {got}, but the {kind} declares {shown} (None: any size). "
            "Pass a sample shaped like the model's input."
        )


def _source(tf: Any, model: Any, signature: str) -> _Source:
    if isinstance(model, (str, os.PathLike)):
        return _saved_model(tf, Path(model), signature)
    kind = _kind(tf, model)
    if kind == "Keras 3 model":
        return _keras3(model)
    if kind == "tf_keras model":
        return _keras_model(model, "tf_keras model")
    if kind in ("tf.function", "concrete function"):
        return _function(tf, model, kind)
    if kind == "tf.Module":
        return _Source("tf.Module", [], lambda tensors: model(*tensors), keep_alive=[model])
    raise UnsupportedModelError(f"{type(model).__name__} is not a Keras model, tf.function, tf.Module or SavedModel.")


def _keras3(model: Any) -> _Source:
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        route = (
            "It is a torch.nn.Module too: export it with ob.export(model, sample, framework='torch')."
            if backend == "torch"
            else "Switch to the TensorFlow backend (KERAS_BACKEND=tensorflow) and rebuild or reload the model, "
            "or save it with model.export(path, format='onnx') from Keras itself."
        )
        raise UnsupportedModelError(
            f"This Keras 3 model runs on the {backend!r} backend; the TensorFlow adapter converts only models on the "
            f"'tensorflow' backend. {route}"
        )
    return _keras_model(model, "Keras 3 model")


def _keras_model(model: Any, kind: str) -> _Source:
    try:
        inputs = list(model.inputs) if getattr(model, "built", True) else None
    except (AttributeError, ValueError):
        inputs = None  # subclassed models have no symbolic inputs
    if not inputs:
        # Subclassed model, or a Sequential never built: call it with the sample's structure.
        def invoke(tensors: list[Any]) -> Any:
            return model(tensors[0] if len(tensors) == 1 else list(tensors), training=False)

        return _Source(kind, [], invoke, keras=True, built=bool(getattr(model, "built", True)), keep_alive=[model])
    names = [
        t.name if not _UNNAMED.match(t.name) else "input" if len(inputs) == 1 else f"input_{i}"
        for i, t in enumerate(inputs)
    ]
    declared = {n: (tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for n, t in zip(names, inputs, strict=True)}
    outputs = getattr(model, "output_names", None)
    return _Source(
        kind,
        names,
        lambda tensors: model(tensors[0] if len(tensors) == 1 else list(tensors), training=False),
        declared=declared,
        output_names=[str(o) for o in outputs] if outputs else None,
        keras=True,
        keep_alive=[model],
    )


def _function(tf: Any, fn: Any, kind: str) -> _Source:
    import inspect

    specs = getattr(fn, "input_signature", None)
    python = getattr(fn, "python_function", None)
    params = list(inspect.signature(python).parameters) if python is not None else []
    if kind == "concrete function":
        specs = [s for s in tf.nest.flatten(fn.structured_input_signature) if isinstance(s, tf.TensorSpec)]
    if not specs:
        return _Source(kind, params, lambda tensors: fn(*tensors))
    names = [s.name or (params[i] if i < len(params) else f"input_{i}") for i, s in enumerate(specs)]
    declared = {n: (tuple(s.shape.as_list()), s.dtype.name) for n, s in zip(names, specs, strict=True)}
    return _Source(kind, names, lambda tensors: fn(*tensors), declared=declared)


def _saved_model(tf: Any, path: Path, signature: str) -> _Source:
    if not path.exists():
        raise ModelFileError(f"SavedModel directory {str(path)!r} does not exist. Check the path.")
    if not (path / "saved_model.pb").is_file():
        raise ModelFileError(
            f"{str(path)!r} is a directory but not a SavedModel (no saved_model.pb). Point to the folder that "
            "tf.saved_model.save() or model.export() wrote."
        )
    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise InputError(
            f"The SavedModel at {str(path)!r} has no signature {signature!r}; it has: "
            f"{', '.join(map(repr, loaded.signatures)) or '(none)'}. Pass signature='...' to choose one."
        )
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    names = list(specs)
    declared = {n: (tuple(specs[n].shape.as_list()), specs[n].dtype.name) for n in names}
    return _Source(
        f"SavedModel signature {signature!r}",
        names,
        lambda tensors: fn(**dict(zip(names, tensors, strict=True))),
        declared=declared,
        keep_alive=[loaded],
    )


# -- names, shapes, axes --------------------------------------------------------------------------
def _input_names(names: list[str], requested: list[str] | Any) -> dict[str, str]:
    if requested is None:
        return {n: n for n in names}
    if len(requested) != len(names):
        raise InputError(f"input_names has {len(requested)} names but the model takes {len(names)} inputs ({names}).")
    return dict(zip(names, requested, strict=True))


def _output_names(tf: Any, structure: Any, source: _Source, requested: Any) -> list[str]:
    paths = ["/".join(p) for p in _paths(structure)]
    if len(paths) != len(tf.nest.flatten(structure)):  # a structure tf.nest flattens differently
        paths = [str(i) for i in range(len(tf.nest.flatten(structure)))]
    if requested is not None:
        if len(requested) != len(paths):
            raise InputError(f"output_names has {len(requested)} names but the model returns {len(paths)} tensors.")
        return list(requested)
    if isinstance(structure, Mapping):
        return [p.replace("/", ".") for p in paths]
    if len(paths) == 1:
        return ["output"]
    if (
        source.output_names
        and len(source.output_names) == len(paths)
        and not any(_UNNAMED.match(n) for n in source.output_names)
    ):
        return list(source.output_names)
    return [f"output_{p.replace('/', '_')}" for p in paths]


def _paths(structure: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Leaf paths in ``tf.nest.flatten`` order (dict keys sorted)."""
    if isinstance(structure, Mapping):
        for key in sorted(structure):
            yield from _paths(structure[key], (*prefix, str(key)))
    elif isinstance(structure, (list, tuple)):
        for i, item in enumerate(structure):
            yield from _paths(item, (*prefix, str(i)))
    elif structure is not None:
        yield prefix


def _shapes(tf: Any, structure: Any) -> list[tuple[int | None, ...]]:
    return [tuple(t.shape) for t in tf.nest.flatten(structure)]


def _rank(source: _Source, sample: Feeds | None, name: str) -> int:
    if sample is not None:
        return int(sample[name].ndim)
    assert source.declared is not None
    return len(source.declared[name][0])


def _declared_axes(source: _Source, user: dict[str, str]) -> DynamicAxes:
    """The model's own ``None`` input dimensions: axis 0 is "batch", others ``<input>_dim<axis>``."""
    assert source.declared is not None
    axes: DynamicAxes = {}
    for name, (shape, _) in source.declared.items():
        dims = {
            axis: ("batch" if axis == 0 else f"{user[name]}_dim{axis}") for axis, d in enumerate(shape) if d is None
        }
        if dims:
            axes[user[name]] = dims
    return axes


def _batch_outputs(proto: Any, out_names: list[str]) -> DynamicAxes:
    found: DynamicAxes = {}
    for name, value in zip(out_names, proto.graph.output, strict=True):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            found[name] = {0: "batch"}
    return found


def _specs(tf: Any, source: _Source, sample: Feeds | None, axes: DynamicAxes, user: dict[str, str]) -> list[Any]:
    specs = []
    for i, name in enumerate(source.names):
        if sample is not None:
            shape: list[int | None] = list(sample[name].shape)
            dtype = sample[name].dtype
        else:
            assert source.declared is not None
            shape, dtype = list(source.declared[name][0]), np.dtype(source.declared[name][1])
        for axis in axes.get(user[name], {}):
            shape[axis] = None
        specs.append(tf.TensorSpec(shape, tf.as_dtype(dtype), name=f"ob_input_{i}"))
    return specs


def _choose_opset(tf2onnx: Any, requested: int | None) -> int:
    newest = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    converter = f"tf2onnx {tf2onnx.__version__}"
    return _capabilities.choose_opset(requested, preferred=newest, converter=converter, converter_max=newest)


# -- conversion ----------------------------------------------------------------------------------
def _convert(
    tf: Any, tf2onnx: Any, source: _Source, specs: list[Any], opset: int, options: Mapping[str, Any], notes: list[str]
) -> onnx.ModelProto:
    import onnx

    def traced(*args: Any) -> Any:
        return source.invoke(list(args))

    function = tf.function(traced, input_signature=specs)
    concrete = function.get_concrete_function(*specs)  # the trace tf2onnx's from_function converts (cached)
    _tf2onnx_fixes.let_xla_calls_inline(concrete)
    large = options.get("large_model")
    if large is None:
        large = _weight_bytes(source) > _LARGE_MODEL_BYTES
    kwargs = dict(options.get("converter_kwargs", {}))
    kwargs["custom_op_handlers"] = _tf2onnx_fixes.MISSING_HANDLERS | dict(kwargs.get("custom_op_handlers") or {})
    messages: list[str] = []
    try:
        with _tf2onnx_fixes.tf2onnx_compat(messages):
            proto, storage = tf2onnx.convert.from_function(
                function, input_signature=specs, opset=opset, large_model=bool(large), **kwargs
            )
    except Exception as err:
        said = f" tf2onnx logged: {'; '.join(messages[:3])}." if messages else ""
        raise ExportError(
            f"tf2onnx could not convert the {source.kind} at opset {opset}: {type(err).__name__}: "
            f"{first_line(err)}.{said} Try another opset (opset=...)."
        ) from err
    if large:
        proto = _tf2onnx_fixes.inline_external(onnx, proto, storage)
        notes.append("converted through tf2onnx's large-model (external data) path")
    _tf2onnx_fixes.captured_constants_to_initializers(tf, proto, concrete)
    ops = _tf2onnx_fixes.unconverted_ops(proto)
    if ops:
        raise ExportError(
            f"tf2onnx left TensorFlow operation(s) {', '.join(ops)} unconverted at opset {opset}: ONNX has no such "
            "operator. Try a newer opset (opset=...), replace the operation in the model, or map it to a custom "
            "domain your runtime implements: converter_kwargs={'custom_ops': {'" + ops[0] + "': 'ai.onnx.contrib'}}."
        )
    return proto


def _weight_bytes(source: _Source) -> int:
    total = 0
    for holder in source.keep_alive:
        for variable in getattr(holder, "variables", []):
            dtype = np.dtype(getattr(variable.dtype, "name", variable.dtype))  # Keras 3 gives a str
            total += int(np.prod(variable.shape)) * dtype.itemsize
    return total


def _finish(proto: Any, input_names: list[str], out_names: list[str], axes: DynamicAxes) -> None:
    graph_inputs = [v.name for v in _graph.inputs(proto)]
    graph_outputs = [o.name for o in proto.graph.output]
    if len(graph_outputs) != len(out_names):
        raise ExportError(f"tf2onnx produced {len(graph_outputs)} outputs where the model returns {len(out_names)}.")
    mapping = {f"ob_input_{i}": name for i, name in enumerate(input_names)}
    mapping.update({f"ob_input_{i}:0": name for i, name in enumerate(input_names)})
    mapping = {k: v for k, v in mapping.items() if k in graph_inputs and k != v}
    if set(graph_outputs) != set(out_names):
        mapping.update({old: new for old, new in zip(graph_outputs, out_names, strict=True) if old != new})
    _graph.rename_values(proto.graph, mapping)
    fixed = _graph.declare_axes(proto, axes)
    if fixed:
        raise ExportError("tf2onnx fixed dimensions declared dynamic: " + "; ".join(fixed))


def _flat_numpy(tf: Any, structure: Any) -> list[np.ndarray]:
    return [np.asarray(t.numpy() if hasattr(t, "numpy") else t) for t in tf.nest.flatten(structure)]


def _versions(tf: Any, source: _Source) -> str:
    version = f"tensorflow {tf.__version__}"
    if source.kind.startswith("Keras 3"):
        import keras

        version += f", keras {keras.__version__}"
    elif source.kind.startswith("tf_keras"):
        import tf_keras

        version += f", tf_keras {tf_keras.__version__}"
    return version


class _Reference:
    """Calls the source model itself (not ``predict()``) on flat numpy inputs."""

    def __init__(self, tf: Any, source: _Source, user: dict[str, str], out_names: list[str]) -> None:
        self.tf, self.source, self.user, self.out_names = tf, source, user, out_names

    def __call__(self, feeds: Feeds) -> Feeds:
        outputs = self.source.run(self.tf, {n: feeds[self.user[n]] for n in self.source.names})
        return dict(zip(self.out_names, _flat_numpy(self.tf, outputs), strict=True))
