"""Saving and loading ``.onnx`` files safely (the facts written with them: :mod:`onnxbridge.graph._metadata`).

Files are ordinary ONNX models that any tool opens. Writes go to a temporary file
in the target folder and are renamed into place, so a failed save never leaves a
truncated model behind. Models past protobuf's 2 GB limit get external data.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from onnxbridge.core._errors import ModelFileError, first_line
from onnxbridge.graph import _checker, _partials

if TYPE_CHECKING:
    import onnx


PROTOBUF_LIMIT = 2**31 - 2**20  # stay a little under 2 GiB: metadata is added afterwards
EXTERNAL_ALIGNMENT = 1 << 16  # external tensors start on 64 KiB boundaries: onnxruntime maps those


def _check_target(target: Path) -> None:
    if target.is_dir():
        raise ModelFileError(f"Cannot save to {str(target)!r}: it is a directory. Give a file path like 'model.onnx'.")
    if not target.parent.is_dir():
        raise ModelFileError(
            f"Cannot save to {str(target)!r}: folder {str(target.parent)!r} does not exist. Create it first."
        )


def _unwritable(target: Path, err: OSError) -> ModelFileError:
    return ModelFileError(
        f"Cannot write {str(target)!r}: {err.strerror or err}. Check that the folder exists, is writable and has "
        "free space; nothing was written there."
    )


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write a file through a temporary name in the same folder, renamed into place on success."""
    target = Path(path)
    _check_target(target)
    _partials.remove_orphans(target.parent)
    try:
        fd, staged = _partials.partial_file(target.parent)
    except OSError as err:
        raise _unwritable(target, err) from err
    try:
        with os.fdopen(fd, "wb") as handle:  # holds the partial's lock until it is renamed into place
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(staged, target)
    except OSError as err:
        Path(staged).unlink(missing_ok=True)
        raise _unwritable(target, err) from err
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    data_name: str | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically; external data when asked or when too large.

    With external data, tensors are streamed one by one (through onnx-ir) into
    ``<name>.data`` (or ``data_name``) beside the file, aligned so onnxruntime can map them;
    ``model`` itself is not modified and no serialized copy of all its weights is made.
    """
    target = Path(path)
    _check_target(target)
    if external_data is None:
        external_data = is_large(model)
    if not external_data:
        with atomic_write(target) as handle:
            handle.write(model.SerializeToString())
        return target
    import onnx_ir as ir

    _partials.remove_orphans(target.parent)
    try:
        with _partials.partial_folder(target.parent) as staging:
            staged, location = staging / target.name, data_name or target.name + ".data"
            ir.save(ir.serde.deserialize_model(model), staged, external_data=location, alignment=EXTERNAL_ALIGNMENT)
            if (staging / location).exists():  # tensors under 256 bytes stay inline; there may be none
                os.replace(staging / location, target.parent / location)
            os.replace(staged, target)
    except OSError as err:
        raise _unwritable(target, err) from err
    return target


def model_bytes(model: onnx.ModelProto) -> int:
    """The model's size in bytes: serialized, or its tensors' bytes past protobuf's limit."""
    stored = stored_bytes(model)
    return stored if stored > PROTOBUF_LIMIT else model.ByteSize()


def is_large(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is past protobuf's 2 GiB limit, decided without serializing it.

    With the upb protobuf backend, ``ByteSize()`` raises instead of answering past 2 GiB, so
    the tensors' bytes are summed instead.
    """
    return stored_bytes(model) > PROTOBUF_LIMIT


def stored_bytes(model: onnx.ModelProto) -> int:
    """Bytes of every tensor stored in the model (initializers and attribute tensors)."""
    return sum(_tensor_bytes(t) for t in _tensors(model.graph))


# Whole-byte element sizes, so that a tensor's raw bytes are counted from its shape: reading
# `raw_data` copies it (upb protobuf), which costs ~0.3 s per 512 MB on every call.
_ITEM_BYTES = {"FLOAT": 4, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "INT32": 4, "INT64": 8, "BOOL": 1}
_ITEM_BYTES |= {"FLOAT16": 2, "DOUBLE": 8, "UINT32": 4, "UINT64": 8, "COMPLEX64": 8, "COMPLEX128": 16, "BFLOAT16": 2}


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    from onnx import TensorProto

    if tensor.HasField("raw_data"):
        item = _ITEM_BYTES.get(TensorProto.DataType.Name(tensor.data_type))
        if item is not None:
            return item * math.prod(tensor.dims)
        return len(tensor.raw_data)  # sub-byte and 8-bit float types: count the bytes themselves
    return tensor.ByteSize()


def declared_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the model's initializers by their declared type and shape, stored inline or in external data."""
    from onnx import TensorProto

    return sum(
        _ITEM_BYTES.get(TensorProto.DataType.Name(t.data_type), 1) * math.prod(t.dims) for t in model.graph.initializer
    )


def load_model(path: str | os.PathLike[str], *, notes: list[str] | None = None) -> onnx.ModelProto:
    """Read an ONNX file, refusing missing, empty, damaged and unsafe ones.

    ``notes`` receives what ``onnx.checker`` could not check (operators it has no schema for,
    such as onnxruntime's contrib operators), when anything.
    """
    return read_model(path, notes=notes)[0]


def read_model(
    path: str | os.PathLike[str], *, notes: list[str] | None = None, weights_above: int | None = None
) -> tuple[onnx.ModelProto, bool]:
    """:func:`load_model`, and whether the model came back whole.

    With ``weights_above``, a model whose weights exceed that many bytes comes back without
    them (:func:`without_weights`), checked from the file, so that tools reading the file
    (onnxruntime) hold the only copy.
    """
    import onnx
    from google.protobuf.message import DecodeError

    source = Path(path)
    if not source.exists():
        raise ModelFileError(f"No such model file: {str(source)!r}. Check the path.")
    if source.is_dir():
        raise ModelFileError(f"{str(source)!r} is a directory; expected an '.onnx' file.")
    if source.stat().st_size == 0:
        raise ModelFileError(f"{str(source)!r} is empty (0 bytes); it is not an ONNX model. Re-export or re-save it.")
    _partials.remove_orphans(source.parent)  # what saves killed in this folder left, whoever ran them
    try:
        model = onnx.load_model(str(source), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ModelFileError(
            f"{str(source)!r} is not a readable ONNX model (truncated, or another format): {err}. "
            "Re-export or re-save it."
        ) from err
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise ModelFileError(
            f"{str(source)!r} parsed, but holds no ONNX graph (no IR version or no outputs); it is not an "
            "ONNX model, or it is truncated. Re-export or re-save it."
        )
    _check_external_data(model, source)
    whole = weights_above is None or declared_bytes(model) <= weights_above
    if not whole:
        model = without_weights(model)  # the parsed weights are freed here
        checked_from: Path | None = source
    else:
        _load_external_data(model, source)
        checked_from = source if is_large(model) else None
    try:
        skipped = _checker.check_model(model, checked_from)
    except Exception as err:
        raise ModelFileError(
            f"{str(source)!r} is damaged or not a valid ONNX model: {first_line(err)}. "
            "If it was cut off while being written, re-save it; onnx.load() still opens it for inspection."
        ) from err
    if skipped and notes is not None:
        notes.append(skipped)
    return model, whole


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in a graph: initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``'s graph, signature and metadata with every top-level weight an empty placeholder.

    The placeholders keep each weight's name, type and shape (so sizes are still known and
    initializers are still told from inputs); nothing of their data is copied.
    """
    import onnx

    light = onnx.ModelProto()
    for name in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, name, getattr(model, name))
    light.opset_import.extend(model.opset_import)
    light.metadata_props.extend(model.metadata_props)
    light.functions.extend(model.functions)
    graph = light.graph
    graph.name = model.graph.name
    for part in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(graph, part).extend(getattr(model.graph, part))
    for tensor in model.graph.initializer:
        graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
    return light


def _check_external_data(model: onnx.ModelProto, source: Path) -> None:
    """Every external data reference of ``model`` names an existing file inside ``source``'s folder."""
    from onnx import external_data_helper as edh

    base = source.parent.resolve()
    for tensor in _tensors(model.graph):
        if not edh.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        resolved = (base / location).resolve()
        if not location or Path(location).is_absolute() or not resolved.is_relative_to(base):
            raise ModelFileError(
                f"{str(source)!r}: tensor {tensor.name!r} points to external data {location!r}, outside the "
                "model's folder. onnxbridge refuses such references; keep the data file beside the model."
            )
        if not resolved.is_file():
            raise ModelFileError(
                f"{str(source)!r}: external data file {location!r} for tensor {tensor.name!r} is missing. "
                "Copy it beside the model file."
            )


def _load_external_data(model: onnx.ModelProto, source: Path) -> None:
    """Read every external tensor of ``model`` (checked by :func:`_check_external_data`) into memory."""
    from onnx import external_data_helper as edh

    if any(edh.uses_external_data(t) for t in _tensors(model.graph)):
        edh.load_external_data_for_model(model, str(source.parent.resolve()))
