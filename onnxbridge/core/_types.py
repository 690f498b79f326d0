"""Value types shared by every layer: named arrays, the source model as a function, the reference.

They live here, at the bottom, so that a module that only passes feeds around need not import
the adapter contract, quantization or validation to name them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from onnxbridge.core._axes import DynamicAxes

__all__ = ["Feeds", "Reference", "ReferenceFn"]

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
