"""The adapter contract: what a framework converter gives onnxbridge.

An adapter is a small object that answers "is this one of mine?" and "convert it".
It is a Protocol rather than a base class, so a third party writes a plain class
with these attributes and registers it; nothing needs to be imported to implement
it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from onnxbridge.core._axes import DynamicAxes, DynamicAxesSpec
from onnxbridge.core._errors import InputError
from onnxbridge.core._timing import Phases
from onnxbridge.core._types import Feeds, ReferenceFn, SourceFiles

if TYPE_CHECKING:
    import onnx

    from onnxbridge.generation._spec import GenerationSpec


def check_options(options: Mapping[str, Any], allowed: Sequence[str], framework: str) -> None:
    """Refuse adapter options the adapter does not know, listing the ones it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"Unknown option(s) for {framework} export: {unknown}. Supported: {', '.join(allowed)}.")


@dataclass(frozen=True)
class ExportRequest:
    """Everything the user asked of :func:`onnxbridge.export`, for the adapter."""

    sample: Any
    dynamic_axes: DynamicAxesSpec = None
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    opset: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    phases: Phases = field(default_factory=Phases, compare=False)  # adapters time their phases here


@dataclass
class Exported:
    """What an adapter returns: the ONNX model and the facts needed to check it.

    Attributes:
        model: The ONNX model, graph inputs and outputs named as the user will use them.
        framework: Framework name, e.g. ``"torch"``.
        framework_version: Version of the framework that produced the model.
        exporter: The converter that ran, e.g. ``"torch.onnx (dynamo)"``.
        dynamic_axes: Declared dynamic axes in normal form, by graph tensor name.
        sample: The export sample, flattened to graph input names.
        reference: Runs the source model on flat inputs (for validation), if possible.
        reference_outputs: Source outputs on ``sample``, by output name.
        notes: What the adapter did on the user's behalf and why (fallbacks, growth).
        properties: Facts that change how to read results, e.g. ``{"precision": "float32"}``;
            shown in validation reports and saved in the file's metadata.
        generation: For a decoder exported with its KV cache: special tokens and the source's
            greedy tokens on fixed prompts (what :meth:`Artifact.generate` and validation use).
        components: For exports of more than one graph (an encoder and a decoder), each graph
            by role; ``model`` is then the main one (the decoder).
        labels: Class names of classifier outputs, by output name, one per column (scikit-learn's
            ``classes_``, transformers' ``id2label``); shown by the browser page.
        source_files: The source's own settings files (transformers' ``config.json`` and
            ``generation_config.json``, the folder it was loaded from), for runtime folders.
        fallback: Where ``model`` uses operators of one onnxruntime release on (a decoder fused
            for onnxruntime 1.32): the same model in standard operators, for other runtimes.
        phases: Seconds spent in each phase of the export (``"torch.onnx.export (dynamo)"``,
            ``"source model run"``, ..., ``"other"``, ``"total"``), set by the dispatcher.
        validation_samples: Inputs validation compares on besides the sample and its resized
            copies, by case name (a detector's images at other aspect ratios).
    """

    model: onnx.ModelProto
    framework: str
    framework_version: str
    exporter: str
    dynamic_axes: DynamicAxes
    sample: Feeds | None = None
    reference: ReferenceFn | None = None
    reference_outputs: Feeds | None = None
    notes: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    generation: GenerationSpec | None = None
    components: dict[str, Exported] | None = None
    labels: dict[str, list[str]] | None = None
    source_files: SourceFiles | None = None
    fallback: Exported | None = None
    phases: dict[str, float] = field(default_factory=dict)
    validation_samples: dict[str, Feeds] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    """A converter from one framework's models to ONNX.

    Attributes:
        framework: Short unique name, e.g. ``"torch"``; what ``export(framework=...)`` takes.
        module_roots: Top-level module names whose classes this adapter converts (for
            example ``("torch",)``). The registry matches them against the model's
            class hierarchy without importing the framework.
    """

    framework: str
    module_roots: tuple[str, ...]

    def accepts(self, model: object) -> bool:
        """Whether this adapter converts ``model`` (may import the framework)."""
        ...

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Convert ``model`` to ONNX as ``request`` asks."""
        ...
