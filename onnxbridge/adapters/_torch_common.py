"""What the PyTorch adapters share: eval mode without side effects, tensors to numpy, the opset, the exporter's chatter.

Used by :mod:`onnxbridge.adapters.pytorch` and the adapters built on it (transformers' decoders
and seq2seq models, torchvision's detectors), which import these from here or from ``pytorch``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from onnxbridge.core._deps import require
from onnxbridge.core._errors import first_line
from onnxbridge.running import _capabilities

__all__ = ["DYNAMO", "captured_warnings", "choose_opset", "inference", "summary", "to_numpy"]

DYNAMO = "dynamo"


def _torch() -> Any:
    return require("torch", purpose="Exporting a PyTorch model")


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor as a numpy array on the CPU (bfloat16 as float32)."""
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()
    return np.asarray(tensor.numpy())


def choose_opset(requested: int | None) -> int:
    """The opset to export at: the one asked for, or the exporter's default capped by onnxruntime's newest."""
    from torch.onnx import _constants  # no public constants for the exporter's opsets

    default = int(getattr(_constants, "ONNX_DEFAULT_OPSET", 18))
    newest = getattr(_constants, "ONNX_MAX_OPSET", None)
    return _capabilities.choose_opset(requested, preferred=default, converter="torch.onnx", converter_max=newest)


@contextlib.contextmanager
def inference(model: Any) -> Iterator[None]:
    """Eval mode and no_grad; every submodule's own training flag is restored after."""
    torch = _torch()
    modes = [(m, m.training) for m in model.modules()]
    with contextlib.suppress(NotImplementedError):  # torch.export's module(): its mode was fixed at export
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            if module.training != training:
                module.training = training


@contextlib.contextmanager
def captured_warnings(notes: list[str], attempt: str) -> Iterator[None]:
    """Keep the exporter's chatter out of the user's console; keep what matters as notes."""
    # Only the dynamo path logs. setLevel clears logging's cache of every logger, which costs
    # a noticeable share of a millisecond-long TorchScript export, so leave loggers alone there.
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript") if attempt == DYNAMO else ()
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # once per location: torch repeats some warnings thousands of times
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    seen = set()
    for warning in caught:
        if issubclass(warning.category, (DeprecationWarning, FutureWarning)):
            continue
        text = first_line(str(warning.message), limit=300)
        if text.startswith("# The axis name"):  # dynamo noting that dims we named alike are alike
            continue
        if text not in seen:
            seen.add(text)
            notes.append(f"{attempt} exporter warned: {text}")


def summary(err: BaseException) -> str:
    """The one line of an exporter error that says what went wrong."""
    text = str(err)
    match = re.search(r"Exception summary\s*\n\s*\n(.+)", text)
    if match:
        text = match.group(1)
    return first_line(text) or type(err).__name__
