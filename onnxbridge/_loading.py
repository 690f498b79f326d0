"""``load()``: an ``.onnx`` file as an :class:`Artifact`, or a saved encoder-decoder folder."""

from __future__ import annotations

import os
from pathlib import Path

from onnxbridge import _artifact, _pair
from onnxbridge._artifact import Artifact
from onnxbridge._pair import EncoderDecoderArtifact

__all__ = ["load"]


def load(path: str | os.PathLike[str]) -> Artifact | EncoderDecoderArtifact:
    """Load an ``.onnx`` file as an :class:`Artifact`, or a folder saved by an encoder-decoder export.

    onnxbridge's metadata (framework, exporter, dynamic axes, recorded reference outputs,
    generation settings) is restored when present; any other ONNX file loads too.

    Raises:
        ModelFileError: The file is missing, empty, truncated, not ONNX, or points to
            external data outside its folder; or the folder is not an onnxbridge export.
    """
    source = Path(path)
    if _pair.is_export_folder(source):
        return _pair.EncoderDecoderArtifact.load(source)
    return _artifact.load(source)
