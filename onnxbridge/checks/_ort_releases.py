"""What an onnxruntime release runs on CPU: its newest IR version and opsets, and its kernels.

For released versions the answer comes from ``data/onnxruntime_releases.json.gz``, which
``scripts/ort_releases.py`` records by installing each release and asking it (its kernel
registry, and which small models it loads); nothing in it is typed by hand. The installed
onnxruntime is asked directly.
"""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.core._errors import InputError

if TYPE_CHECKING:
    import onnx

_DATA = "onnxruntime_releases.json.gz"
ONNX_DOMAIN = "ai.onnx"
# Opsets and IR versions probed: every value a release might load, and a few past it.
PROBED_IR = range(3, 14)
PROBED_OPSETS = range(7, 31)
PROBED_ML_OPSETS = range(1, 9)


@dataclass(frozen=True)
class Kernel:
    """One CPU kernel: the operator versions it covers and the types each type parameter takes."""

    start: int
    end: int
    types: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Runtime:
    """One onnxruntime release as compat sees it."""

    version: str
    ir: int
    """The newest IR version the release loads."""
    opsets: Mapping[str, int]
    """The newest opset it loads, per domain (``ai.onnx``, ``ai.onnx.ml``)."""
    kernels: Mapping[tuple[str, str], tuple[Kernel, ...]]
    """CPU kernels by (domain, operator); the default domain is ``ai.onnx``."""
    inputs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """How many inputs each contrib operator takes, by (domain, operator); empty when not recorded."""


def _domain(domain: str) -> str:
    return domain or ONNX_DOMAIN


@functools.cache
def _recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress(resources.files("onnxbridge.data").joinpath(_DATA).read_bytes()))
    return data


def recorded_releases() -> list[str]:
    """The releases whose kernels are recorded, oldest first."""
    releases: list[str] = _recorded()["releases"]
    return releases


def _minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise InputError(f"onnxruntime=={version!r}: expected a release number such as '1.17' or '1.17.3'.") from None


@functools.cache
def release(version: str) -> Runtime:
    """A recorded release by its number; the newest recorded patch of its minor release answers."""
    wanted = _minor(version)
    releases = recorded_releases()
    index = next((i for i, r in enumerate(releases) if _minor(r) == wanted), None)
    if index is None:
        raise InputError(
            f"onnxruntime {version}: onnxbridge records onnxruntime {releases[0]} to {releases[-1]} (each release "
            "asked for its own kernels by scripts/ort_releases.py); 1.15 and older cannot list their kernels. Use a "
            "recorded release, or target 'onnxruntime' to check against the installed one."
        )
    data = _recorded()
    kernels: dict[tuple[str, str], list[Kernel]] = {}
    for key, params in data["kernels"].items():
        if not params[""][""] >> index & 1:
            continue
        domain, op, start, end = key.split("|")
        types = {p: frozenset(t for t, mask in ts.items() if mask >> index & 1) for p, ts in params.items() if p}
        kernels.setdefault((domain, op), []).append(Kernel(int(start), int(end), types))
    limits = data["limits"][releases[index]]
    inputs = {
        tuple(key.split("|", 1)): int(count)
        for key, counts in data.get("inputs", {}).items()
        for count, mask in counts.items()
        if mask >> index & 1
    }
    kept = {k: tuple(v) for k, v in kernels.items()}
    return Runtime(releases[index], limits["ir"], limits["opsets"], kept, inputs)


@functools.cache
def installed() -> Runtime:
    """The installed onnxruntime, asked directly (its kernels, and which small models it loads)."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as capi

    # One kernel per operator, version range and type there; merged per range, as the record is.
    merged: dict[tuple[str, str, int, int], dict[str, set[str]]] = {}
    for k in capi.get_all_opkernel_def():
        if k.provider == "CPUExecutionProvider":
            entry = merged.setdefault((_domain(k.domain), k.op_name, *k.version_range), {})
            for param, types in k.type_constraints.items():
                entry.setdefault(param, set()).update(types)
    kernels: dict[tuple[str, str], list[Kernel]] = {}
    for (domain, op, start, end), params in merged.items():
        kernels.setdefault((domain, op), []).append(Kernel(start, end, {p: frozenset(t) for p, t in params.items()}))
    with tempfile.TemporaryDirectory() as tmp:
        loads = {}
        for name, model in probe_models().items():
            path = Path(tmp) / name
            path.write_bytes(model.SerializeToString())
            loads[name] = _loads(ort, path)
    ir, opsets = limits(loads)
    return Runtime(ort.__version__, ir, opsets, {k: tuple(v) for k, v in kernels.items()}, contrib_inputs())


@functools.cache
def contrib_inputs() -> dict[tuple[str, str], int]:
    """How many inputs each contrib operator of the installed onnxruntime takes (variadic: 2**31 - 1); read-only."""
    from onnxruntime.capi import onnxruntime_pybind11_state as capi

    counts: dict[tuple[str, str], int] = {}
    for schema in capi.get_all_operator_schema():
        if schema.domain not in ("", ONNX_DOMAIN, "ai.onnx.ml") and not schema.deprecated:
            variadic = any(str(i.option).endswith("Variadic") for i in schema.inputs)
            key = (schema.domain, schema.name)
            counts[key] = max(counts.get(key, 0), 2**31 - 1 if variadic else len(schema.inputs))
    return counts


def first_release_taking(domain: str, op: str, inputs: int) -> str | None:
    """The first recorded release whose ``op`` takes ``inputs`` inputs or more."""
    for version in recorded_releases():
        if release(version).inputs.get((domain, op), 0) >= inputs:
            return version
    return None


def _loads(ort: Any, path: Path) -> bool:
    import numpy as np

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.ones((1, 2), np.float32)})
    except Exception:  # noqa: BLE001 - any failure to load or run means "does not load"
        return False
    return True


def probe_models() -> dict[str, onnx.ModelProto]:
    """Small models whose loading tells a release's newest IR version and opsets, by file name."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    identity = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    models = {}
    for ir in PROBED_IR:
        models[f"ir-{ir:02d}.onnx"] = helper.make_model(
            identity, opset_imports=[helper.make_opsetid("", 7)], ir_version=ir
        )
    for opset in PROBED_OPSETS:
        opsets = [helper.make_opsetid("", opset)]
        models[f"opset-{opset:02d}.onnx"] = helper.make_model(identity, opset_imports=opsets, ir_version=7)
    normalizer = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2")
    ml_graph = helper.make_graph([normalizer], "g", [x], [y])
    for ml in PROBED_ML_OPSETS:
        opsets = [helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", ml)]
        models[f"ml-{ml:02d}.onnx"] = helper.make_model(ml_graph, opset_imports=opsets, ir_version=7)
    return models


def limits(loads: Mapping[str, bool]) -> tuple[int, dict[str, int]]:
    """The newest IR version and opsets a release loaded, from ``{probe model name: loaded}``."""

    def newest(prefix: str) -> int:
        return max(
            (int(n[len(prefix) + 1 : -5]) for n, ok in loads.items() if n.startswith(prefix + "-") and ok), default=0
        )

    return newest("ir"), {ONNX_DOMAIN: newest("opset"), "ai.onnx.ml": newest("ml")}


def first_release_with(domain: str, op: str, version: int | None, types: Mapping[str, str]) -> str | None:
    """The oldest recorded release with a CPU kernel for ``op`` at ``version`` taking ``types``."""
    for name in recorded_releases():
        if kernel_for(release(name), domain, op, version, types) is not None:
            return name
    return None


def first_release_loading(domain: str, opset: int) -> str | None:
    """The oldest recorded release that loads ``opset`` of ``domain``."""
    limits = _recorded()["limits"]
    return next((r for r in recorded_releases() if limits[r]["opsets"].get(domain, 0) >= opset), None)


def kernel_for(runtime: Runtime, domain: str, op: str, version: int | None, types: Mapping[str, str]) -> Kernel | None:
    """A kernel of ``runtime`` for ``op`` at ``version`` (any, when unknown) that takes ``types``."""
    for kernel in runtime.kernels.get((_domain(domain), op), ()):
        if version is not None and not kernel.start <= version <= kernel.end:
            continue
        if all(t in kernel.types[p] for p, t in types.items() if p in kernel.types):
            return kernel
    return None


def opsets_of(model: onnx.ModelProto) -> dict[str, int]:
    """The model's opset per domain (the default domain as ``ai.onnx``)."""
    return {_domain(o.domain): o.version for o in model.opset_import}
