"""What an artifact hands to deployment: the facts :meth:`Artifact.save` records, and which graph a runtime gets.

A decoder fused for onnxruntime 1.32 (``GroupQueryAttention`` given its 17th input) carries the
same model in standard operators as ``artifact.fallback``. Runtimes that cannot load the fused
graph get that one: transformers.js folders (its onnxruntime-node 1.30) and the browser page.
``compat()`` checks it when the fused graph fails a target and says whether it passes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from onnxbridge.deploy import _layouts
from onnxbridge.graph import _metadata

if TYPE_CHECKING:
    import numpy as np

    from onnxbridge._artifact import Artifact
    from onnxbridge.checks._compat_report import CompatReport
    from onnxbridge.deploy._web import WebModel

__all__ = ["compat", "file_facts", "for_layout", "web_model"]


def file_facts(artifact: Artifact, reference: bool) -> _metadata.FileFacts:
    """What :meth:`Artifact.save` records in the file (``reference``: the export sample and the source's outputs)."""
    truth = artifact.reference
    sample, outputs = (truth.feeds(), truth.outputs) if reference else (None, None)
    if sample is not None and outputs is None and truth.run is not None:
        outputs = truth.run(sample)
    recorded = (sample, dict(outputs)) if sample is not None and outputs is not None else None
    reports = {
        "validation": artifact.validation,
        "quantization": artifact.quantization,
        "optimization": artifact.optimization,
    }
    return _metadata.FileFacts(
        framework=artifact.framework,
        framework_version=artifact.framework_version,
        exporter=artifact.exporter,
        dynamic_axes=artifact.dynamic_axes,
        export_notes=artifact.export_notes,
        properties=artifact.properties,
        summaries={kind: report.summary() for kind, report in reports.items() if report is not None},
        generation=artifact.generation.to_json() if artifact.generation is not None else None,
        labels=artifact.labels,
        reference=recorded,
        source_files=artifact.source_files.to_json() if artifact.source_files is not None else None,
    )


def for_layout(artifact: Artifact, layout: str) -> Artifact:
    """The graph a ``layout`` folder gets: the fallback where the runtime refuses the artifact's own graph."""
    if _layouts.refusal(layout, artifact.model) and artifact.fallback is not None:  # a quantized one makes it here
        return artifact.fallback
    return artifact


def compat(artifact: Artifact, target: str) -> CompatReport:
    """:meth:`Artifact.compat`: the artifact's graph on ``target``, and its fallback where that graph fails."""
    from onnxbridge.checks import _compat

    report = _compat.check(
        artifact.model,
        target,
        properties=artifact.properties,
        sample=artifact.reference.feeds(),
        run=functools.partial(_cpu_run, artifact),
    )
    fallback = None if report.ok else artifact.fallback  # made only when needed (a quantized artifact's quantizes)
    if fallback is None:
        return report
    report.fallback = fallback.compat(target)
    if report.fallback.ok:
        report.notes.append(
            f"art.fallback, the same model in standard operators, passes {target}: deploy it there "
            "(save(layout='transformers.js') and to_web() use it on their own)"
        )
    else:
        report.notes.append(f"art.fallback, the same model in standard operators, fails {target} too (see .fallback)")
    return report


def web_model(artifact: Artifact) -> WebModel:
    """What :meth:`Artifact.to_web` hands the browser page: the fallback where onnxruntime-web refuses the graph."""
    from onnxbridge.checks import _compat, _web_check
    from onnxbridge.deploy import _web

    refused = _compat.graph_inputs_problem(artifact.model, _web_check.ORT_WEB_VERSION)
    chosen = artifact.fallback if refused and artifact.fallback is not None else artifact
    return _web.WebModel(
        model=chosen.model,
        facts={"framework": chosen.framework, "exporter": chosen.exporter, "opset": chosen.opset},
        labels=chosen.labels,
        properties=chosen.properties,
        sample=chosen.reference.feeds(),
        run=functools.partial(_cpu_run, chosen),
        write=lambda path: chosen.save(path, external_data=False),
    )


def _cpu_run(artifact: Artifact, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Outputs of ``artifact`` in onnxruntime on CPU (what the checks compare other runtimes with)."""
    return dict(artifact.session(providers=["cpu"]).run(dict(feeds)))
