"""Model files as ``export()`` takes them: what ``onnxbridge export SOURCE`` opens.

Build scripts and model registries hold files, not live objects. :func:`open_source` recognises
the kind of file (or folder), loads it with its own framework, and says what it found; it never
unpickles anything unless asked to, because loading a pickle runs code from the file.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxbridge.core._deps import require
from onnxbridge.core._errors import InputError

KINDS = (
    "a transformers model folder (config.json + weights, as save_pretrained writes it)  [transformers]",
    "a TensorFlow SavedModel folder (saved_model.pb; --signature)  [tensorflow]",
    "a Keras .keras or .h5 file  [tensorflow]",
    "a torch.export program .pt2 (torch.export.save)  [torch]",
    "a TorchScript .pt/.pth file (torch.jit.save; needs --input)  [torch]",
    "a LightGBM text model (.txt, as Booster.save_model writes it)  [lightgbm]",
    "an XGBoost .json or .ubj model  [xgboost]",
    "a scikit-learn model saved with skops (.skops; --trust-type for types beyond its safe defaults)  [sklearn]",
    "a pickle or joblib file (.pkl, .pickle, .joblib), only with --trust-pickle  [sklearn]",
    "an .onnx file (re-validated, converted, quantized)",
)
_PICKLES = (".pkl", ".pickle", ".joblib")


@dataclass
class Source:
    """What a file held: the model for ``export()`` (or an artifact for .onnx), and how it was read."""

    kind: str
    model: Any
    sample: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    task: str | None = None


def _unknown(path: Path, why: str) -> InputError:
    listed = "\n  - ".join(KINDS)
    return InputError(
        f"{str(path)!r}: {why}. onnxbridge export takes:\n  - {listed}\n"
        'The extra in brackets installs what each needs, e.g. pip install "onnxbridge[torch]".'
    )


def open_source(
    path: Path, *, signature: str | None = None, trust_pickle: bool = False, trusted_types: list[str] | None = None
) -> Source:
    """Load ``path`` with its framework. Typed errors for what cannot be (or must not be) loaded."""
    if not path.exists():
        raise InputError(f"{str(path)!r} does not exist. Pass a model file or folder.")
    if path.is_dir():
        if (path / "config.json").is_file():
            return _transformers(path)
        if (path / "saved_model.pb").is_file():
            return Source("SavedModel", str(path), options={"signature": signature or "serving_default"})
        raise _unknown(path, "a folder without config.json (transformers) or saved_model.pb (SavedModel)")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from onnxbridge._loading import load

        return Source("ONNX", load(path))
    if suffix in (".keras", ".h5"):
        keras = require("keras", purpose="Loading a Keras file", extra="tensorflow")
        return Source("Keras", keras.models.load_model(path, compile=False))
    if suffix == ".pt2":
        return _torch_export(path)
    if suffix in (".pt", ".pth"):
        return _torch_file(path)
    if suffix in (".json", ".ubj"):
        return _xgboost(path)
    if suffix in (".txt", ".lgb", ".model"):
        return _lightgbm(path)
    if suffix == ".skops":
        return _skops(path, trusted_types or [])
    if suffix in _PICKLES:
        if not trust_pickle:
            raise InputError(
                f"{str(path)!r} is a pickle: loading it runs code stored in the file, so onnxbridge does not "
                "open it unless you pass --trust-pickle (only for files you made or trust)."
            )
        joblib = require("joblib", purpose="Loading a pickle", extra="sklearn")
        return Source("pickle", joblib.load(path))
    raise _unknown(path, f"the file kind {suffix or '(no suffix)'!r} is not one onnxbridge opens")


def _transformers(path: Path) -> Source:
    transformers = require("transformers", purpose="Loading a transformers model folder", extra="transformers")
    config = json.loads((path / "config.json").read_text())
    names = config.get("architectures") or []
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None:
        raise InputError(
            f"{str(path)!r}/config.json names no model class transformers {transformers.__version__} has "
            f"(architectures={names!r}). Save the model with save_pretrained(), which records it."
        )
    return Source(f"transformers folder ({names[0]})", cls.from_pretrained(path))


def _torch_export(path: Path) -> Source:
    torch = require("torch", purpose="Loading a torch.export program", extra="torch")
    program = torch.export.load(path)
    example: Any = program.example_inputs or ((), {})
    args, kwargs = example
    if kwargs:
        raise InputError(f"{str(path)!r} was exported with keyword inputs; onnxbridge export takes positional ones.")
    sample = args[0] if len(args) == 1 else (tuple(args) or None)
    return Source("torch.export program", program.module(), sample=sample)


def _torch_file(path: Path) -> Source:
    torch = require("torch", purpose="Loading a PyTorch file", extra="torch")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("constants.pkl") for name in archive.namelist())
        if scripted:
            return Source("TorchScript", torch.jit.load(path, map_location="cpu"))
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(
            f"{str(path)!r} is neither a TorchScript file nor plain weights ({type(err).__name__}). Save the model "
            "with torch.jit.save(torch.jit.script(model), path) or torch.export.save(torch.export.export(model, "
            "args), 'model.pt2')."
        ) from err
    if isinstance(content, dict):
        raise InputError(
            f"{str(path)!r} holds a state_dict: weights only ({len(content)} tensors), not the model's code. "
            "Weights alone cannot be exported; the architecture is needed. In Python: model = MyModel(); "
            "model.load_state_dict(torch.load(path)); ob.export(model, sample). Or save the whole program "
            "with torch.export.save(torch.export.export(model, args), 'model.pt2') and export that."
        )
    raise InputError(f"{str(path)!r} holds a {type(content).__name__}, not a model onnxbridge can export.")


def _xgboost(path: Path) -> Source:
    xgboost = require("xgboost", purpose="Loading an XGBoost model", extra="xgboost")
    booster = xgboost.Booster()
    try:
        booster.load_model(path)
    except xgboost.core.XGBoostError as err:
        raise _unknown(path, "not an XGBoost model (.json and .ubj are read as XGBoost)") from err
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    cls = xgboost.XGBClassifier if objective.startswith(("binary:", "multi:")) else xgboost.XGBRegressor
    model = cls()
    model.load_model(path)
    return Source(f"XGBoost {cls.__name__} ({objective})", model, sample=_rows(booster.num_features()))


def _lightgbm(path: Path) -> Source:
    with path.open("rb") as f:
        first = f.readline().strip()
    if first != b"tree":
        raise _unknown(path, "not a LightGBM text model (its first line is not 'tree')")
    lightgbm = require("lightgbm", purpose="Loading a LightGBM model", extra="lightgbm")
    booster = lightgbm.Booster(model_file=path)
    objective = str(booster.dump_model().get("objective", "?")).split()[0]
    return Source(f"LightGBM Booster ({objective})", booster, sample=_rows(booster.num_feature()))


def _skops(path: Path, trusted: list[str]) -> Source:
    """A scikit-learn model from skops' format, which loads only the types it (or the user) trusts."""
    sio = require("skops.io", purpose="Loading a .skops file", extra="sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as err:
        raise _unknown(path, f"not a readable skops file ({type(err).__name__}: {err})") from err
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        listed = " ".join(f"--trust-type {name}" for name in refused)
        raise InputError(
            f"{str(path)!r} holds types skops does not trust by default: {', '.join(refused)}. Nothing was loaded. "
            f"If you trust the file, pass {listed}"
        )
    return Source("skops file", sio.load(path, trusted=sorted(set(untrusted))))


def _rows(width: int) -> np.ndarray:
    """Two seeded random rows of ``width`` features: the sample of a booster read from a file."""
    return np.random.default_rng(0).standard_normal((2, width)).astype(np.float32)


_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.:/-]*)=(?P<shape>\d+(?:x\d+)*)(?::(?P<dtype>\w+))?$")


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    """``name=1x3x224x224:float32`` -> a seeded random array of that shape and dtype, by name."""
    arrays = {}
    rng = np.random.default_rng(0)
    for spec in specs:
        match = _SPEC.match(spec.strip())
        if match is None:
            raise InputError(
                f"--input {spec!r}: expected name=SHAPE[:dtype], e.g. input=1x3x224x224:float32 or ids=2x16:int64."
            )
        shape = tuple(int(d) for d in match["shape"].split("x"))
        dtype_name = match["dtype"] or "float32"
        try:
            dtype = np.dtype(dtype_name)
        except TypeError as err:
            raise InputError(f"--input {spec!r}: {dtype_name!r} is not a dtype (float32, int64, ...).") from err
        if dtype.kind in "iu":
            arrays[match["name"]] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind in "fb":
            arrays[match["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            raise InputError(f"--input {spec!r}: dtype {dtype_name!r} is not numeric.")
    return arrays


def parse_dynamic(values: list[str]) -> Any:
    """``--dynamic`` values: ``["batch"]``, or ``name=0:batch,1:seq`` per input (None when none)."""
    if not values:
        return None
    if values == ["batch"]:
        return "batch"
    axes: dict[str, dict[int, str]] = {}
    for item in values:
        name, sep, spec = item.partition("=")
        try:
            pairs = [part.split(":") for part in spec.split(",")] if sep else []
            axes[name] = {int(axis): label for axis, label in pairs}
        except ValueError:
            pairs = []
        if not sep or not pairs:
            raise InputError(f"--dynamic {item!r}: expected 'batch' or name=0:batch,1:seq.")
    return axes


def export_source(
    found: Source, *, task: str | None, inputs: dict[str, np.ndarray], dynamic_axes: Any, opset: int | None
) -> Any:
    """``ob.export`` of what a file held (an .onnx file: itself, converted to ``opset`` if given)."""
    from onnxbridge._artifact import Artifact
    from onnxbridge._export import export

    if isinstance(found.model, Artifact):
        return found.model.with_opset(opset) if opset is not None else found.model
    sample: Any = found.sample
    if inputs:
        arrays: list[Any] = list(inputs.values())
        if type(found.model).__module__.startswith("torch"):
            torch = require("torch", purpose="Exporting a PyTorch file", extra="torch")
            arrays = [torch.from_numpy(a) for a in arrays]
        sample = arrays[0] if len(arrays) == 1 else tuple(arrays)
    options = {**found.options, **({"task": task} if task else {})}
    names = list(inputs) or None
    return export(found.model, sample, dynamic_axes, input_names=names, opset=opset, **options)
