"""What :meth:`Artifact.validate` runs on one artifact.

The checks of :mod:`onnxbridge.checks._validation`, then the generation replay of
:mod:`onnxbridge.generation._check`, over one CPU session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.checks import _validation
from onnxbridge.core._types import Feeds
from onnxbridge.generation import _check, _loop
from onnxbridge.graph import _graph
from onnxbridge.running._feeds import as_feeds
from onnxbridge.running._session import Session

if TYPE_CHECKING:
    from onnxbridge._artifact import Artifact

__all__ = ["validate"]


def validate(
    artifact: Artifact,
    path: Path | None,
    *,
    cases: Mapping[str, Feeds],
    rtol: float | None,
    atol: float | None,
    samples: Iterable[Any] | None,
    raise_on_failure: bool,
    strict: bool,
) -> _validation.ValidationReport:
    """:meth:`Artifact.validate` of ``artifact``, read from ``path`` where tools take a file.

    ``cases`` are inputs the export chose to validate on besides the sample's resized copies (a
    detector's images at other aspect ratios), by case name.
    """
    model = artifact.model
    dtypes = _graph.input_dtypes(model)
    names = artifact.input_names
    extra = [as_feeds(s, names, f"samples[{i}]", dtypes) for i, s in enumerate(samples or [])]
    opened: list[Session] = []

    def session() -> Session:  # one CPU session for every check that runs the model
        if not opened:
            opened.append(artifact.session(providers=["cpu"]))
        return opened[0]

    truth = artifact.reference
    quantized = artifact.quantization.mode.value if artifact.quantization is not None else None
    report = _validation.validate(
        model,
        path=path,
        dynamic_axes=artifact.dynamic_axes,
        sample={name: np.array(value) for name, value in truth.sample.items()} if truth.sample is not None else None,
        source=truth.run,
        recorded=dict(truth.outputs) if truth.outputs is not None else None,
        session=session,
        samples=extra,
        named=cases,
        rtol=rtol,
        atol=atol,
        quantized=quantized,
        facts=artifact.properties,
        strict=strict,
    )
    spec = artifact.generation
    replay = (lambda record: _loop.replay(session(), spec)(record)) if spec is not None else None
    return _check.conclude(
        report, spec, replay, quantized=quantized, framework=artifact.framework, raise_on_failure=raise_on_failure
    )
