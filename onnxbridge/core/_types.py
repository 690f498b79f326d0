"""Value types shared by every layer: named arrays, the source model as a function, the reference.

They live here, at the bottom, so that a module that only passes feeds around need not import
the adapter contract, quantization or validation to name them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxbridge.core._axes import DynamicAxes

__all__ = ["Feeds", "Reference", "ReferenceFn", "SourceFiles"]

Feeds = dict[str, np.ndarray]
"""Named numpy arrays: the flat form of a model's inputs or outputs."""

ReferenceFn = Callable[[Feeds], Feeds]
"""Runs the source model on flat inputs and returns its flat outputs by name."""


@dataclass(frozen=True)
class Reference:
    """The ground truth a derived artifact is built and measured against.

    Attributes:
        sample: The export sample by graph input name (read-only arrays), or ``None``.
        run: Runs the source model on flat inputs, or ``None`` when the source is not at
            hand (a loaded file).
        outputs: The source's outputs on ``sample`` recorded at export time, or ``None``.
        dynamic_axes: The declared dynamic axes, ``{tensor: {axis: name}}``.
    """

    sample: Mapping[str, np.ndarray] | None
    run: ReferenceFn | None
    outputs: Mapping[str, np.ndarray] | None
    dynamic_axes: DynamicAxes

    @classmethod
    def of(
        cls,
        sample: Feeds | None,
        run: ReferenceFn | None,
        outputs: Feeds | None,
        dynamic_axes: DynamicAxes,
    ) -> Reference:
        """A reference over read-only views of the given arrays."""
        return cls(_frozen(sample), run, _frozen(outputs), types.MappingProxyType(dict(dynamic_axes)))  # type: ignore[arg-type]

    def feeds(self) -> Feeds | None:
        """A plain dict of the sample (arrays stay read-only views)."""
        return dict(self.sample) if self.sample is not None else None


def _frozen(feeds: Feeds | None) -> Mapping[str, np.ndarray] | None:
    if feeds is None:
        return None
    out = {}
    for name, value in feeds.items():
        view = np.asarray(value).view()
        view.setflags(write=False)
        out[name] = view
    return types.MappingProxyType(out)


@dataclass(frozen=True)
class SourceFiles:
    """The source model's own settings files, for runtimes that read them beside the graph.

    Attributes:
        configs: JSON content by file name, as ``save_pretrained`` writes them
            (``config.json``, ``generation_config.json``).
        folder: The local folder the model was loaded from, where its tokenizer files may be;
            ``None`` for a model built in memory.
    """

    configs: Mapping[str, Mapping[str, Any]]
    folder: str | None = None

    def setting(self, name: str) -> Any:
        """A value of ``config.json`` (its text model's, for a multimodal one), or ``None``."""
        config = dict(self.configs.get("config.json", {}))
        return dict(config.get("text_config") or {}).get(name, config.get(name))

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form for a saved file's metadata."""
        return {"configs": {name: dict(data) for name, data in self.configs.items()}, "folder": self.folder}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceFiles:
        """Inverse of :meth:`to_json`."""
        return cls(configs=dict(data.get("configs", {})), folder=data.get("folder"))
