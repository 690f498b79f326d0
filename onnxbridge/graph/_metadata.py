"""onnxbridge's facts in a model file's ``metadata_props``: written by ``save``, read back by ``load``.

Both directions live here, as one :class:`FileFacts` value, so what is written and what is
read cannot drift apart. Values are JSON (strings as they are) under keys prefixed
``onnxbridge.``; other tools' metadata is left untouched.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._types import Feeds

if TYPE_CHECKING:
    import onnx

__all__ = ["FileFacts", "decode_reference", "encode_reference", "read", "write"]

PREFIX = "onnxbridge."
REFERENCE_LIMIT = 1 << 20  # bytes of sample + outputs worth embedding in a model file


@dataclass(frozen=True)
class FileFacts:
    """What onnxbridge records about a model in its file.

    Attributes:
        framework: Framework the model came from; ``None`` in a file onnxbridge did not write.
        framework_version: Its version at export time.
        exporter: The converter that produced the graph.
        dynamic_axes: Declared dynamic axes, ``{tensor: {axis: name}}``; ``None`` when not recorded.
        export_notes: What onnxbridge did on the user's behalf.
        properties: Facts that change how to read results (``{"precision": "float32"}``).
        summaries: Reports as plain data by kind (``"validation"``, ``"quantization"``, ``"optimization"``).
        generation: The generation settings as JSON data, or ``None``.
        labels: Class names per output, or ``None``.
        reference: The export sample and the source's outputs on it, or ``None``.
        source_files: The source's settings files and folder as JSON data (``SourceFiles.to_json``), or ``None``.
        version: The onnxbridge version that wrote the file.
    """

    framework: str | None = None
    framework_version: str | None = None
    exporter: str | None = None
    dynamic_axes: DynamicAxes | None = None
    export_notes: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    summaries: Mapping[str, Any] = field(default_factory=dict)
    generation: Mapping[str, Any] | None = None
    labels: Mapping[str, list[str]] | None = None
    reference: tuple[Feeds, Feeds] | None = None
    source_files: Mapping[str, Any] | None = None
    version: str | None = None

    @property
    def recorded(self) -> bool:
        """Whether the file carries onnxbridge's facts at all."""
        return self.version is not None or self.framework is not None


_SUMMARIES = ("validation", "quantization", "optimization")


def write(model: onnx.ModelProto, facts: FileFacts) -> None:
    """Replace onnxbridge's metadata entries of ``model`` with ``facts`` (the reference only when small)."""
    from onnxbridge._version import __version__

    axes = facts.dynamic_axes or {}
    entries: dict[str, Any] = {
        "version": __version__,
        "framework": facts.framework,
        "framework_version": facts.framework_version,
        "exporter": facts.exporter,
        "dynamic_axes": {name: {str(a): d for a, d in dims.items()} for name, dims in axes.items()},
        "export_notes": list(facts.export_notes),
        "properties": dict(facts.properties) or None,
        **{kind: facts.summaries.get(kind) for kind in _SUMMARIES},
        "generation": dict(facts.generation) if facts.generation is not None else None,
        "labels": dict(facts.labels) if facts.labels is not None else None,
        "reference": encode_reference(*facts.reference) if facts.reference is not None else None,
        "source_files": dict(facts.source_files) if facts.source_files is not None else None,
    }
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in keep:
        model.metadata_props.add(key=key, value=value)
    for key, value in entries.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        model.metadata_props.add(key=PREFIX + key, value=text)


def read(model: onnx.ModelProto) -> FileFacts:
    """The facts :func:`write` recorded in ``model`` (empty ones for a file onnxbridge did not write)."""
    meta = {p.key[len(PREFIX) :]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
    axes = None
    if "dynamic_axes" in meta:
        axes = {n: {int(a): d for a, d in dims.items()} for n, dims in json.loads(meta["dynamic_axes"]).items()}
    return FileFacts(
        framework=meta.get("framework"),
        framework_version=meta.get("framework_version"),
        exporter=meta.get("exporter"),
        dynamic_axes=axes,
        export_notes=tuple(json.loads(meta.get("export_notes", "[]"))),
        properties=json.loads(meta.get("properties", "{}")),
        summaries={kind: json.loads(meta[kind]) for kind in _SUMMARIES if kind in meta},
        generation=json.loads(meta["generation"]) if "generation" in meta else None,
        labels=json.loads(meta["labels"]) if "labels" in meta else None,
        reference=decode_reference(meta["reference"]) if "reference" in meta else None,
        source_files=json.loads(meta["source_files"]) if "source_files" in meta else None,
        version=meta.get("version"),
    )


def encode_reference(sample: Feeds, outputs: Feeds) -> str | None:
    """Sample inputs and reference outputs as base64 ``.npz``, if small enough to embed."""
    arrays = {f"in/{k}": v for k, v in sample.items()} | {f"out/{k}": v for k, v in outputs.items()}
    if any(a.dtype == object for a in arrays.values()) or sum(a.nbytes for a in arrays.values()) > REFERENCE_LIMIT:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_reference(text: str) -> tuple[Feeds, Feeds]:
    """Inverse of :func:`encode_reference`."""
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as data:
        sample = {k[3:]: data[k] for k in data.files if k.startswith("in/")}
        outputs = {k[4:]: data[k] for k in data.files if k.startswith("out/")}
    return sample, outputs
