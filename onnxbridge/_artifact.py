"""The Artifact: an exported ONNX model and everything known about it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from onnxbridge import _deploying, _validating
from onnxbridge.checks import _validation
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._types import Reference, ReferenceFn, SourceFiles
from onnxbridge.deploy import _layouts
from onnxbridge.exporting import _describe
from onnxbridge.exporting._adapter import Exported
from onnxbridge.generation import _loop
from onnxbridge.generation._spec import GenerationKwargs, GenerationOptions, GenerationSpec
from onnxbridge.graph import _files, _graph, _metadata, _scratch
from onnxbridge.quantize._options import QuantizeKwargs, QuantizeOptions
from onnxbridge.quantize._types import OptimizationReport, QuantizationMode, QuantizationReport
from onnxbridge.running._session import Session

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from onnxbridge.checks._compat_report import CompatReport
    from onnxbridge.running._providers import ProviderSpec

__all__ = ["Artifact", "load"]


class Artifact:
    """An ONNX model with its provenance, ready to validate, run and save.

    Returned by :func:`onnxbridge.export` and :func:`onnxbridge.load`.

    Attributes:
        model: The ``onnx.ModelProto``.
        framework: Framework the model came from (``"torch"``, ``"onnx"``, ...).
        framework_version: Version of that framework at export time.
        exporter: The converter that produced the graph.
        dynamic_axes: Declared dynamic axes, ``{tensor: {axis: dim_name}}``.
        export_notes: What onnxbridge did on the user's behalf during export.
        properties: Facts that change how to read results (e.g. ``{"precision": "float32"}``).
        validation: The last :class:`ValidationReport`, or ``None``.
        parent: The artifact this one was quantized or optimized from, or ``None``.
        quantization: The :class:`QuantizationReport` of a quantized artifact, or ``None``.
        optimization: The :class:`OptimizationReport` of an optimized artifact, or ``None``.
        generation: For a decoder exported with ``task="text-generation"``: its special tokens
            and the source's greedy tokens on fixed prompts; ``None`` otherwise.
        labels: Class names of classifier outputs, ``{output: [name per column]}``, or ``None``.
        source_files: The source's own settings files (transformers' ``config.json`` and
            ``generation_config.json``) that :meth:`save` writes into runtime folders, or ``None``.
        fallback: For a decoder fused for onnxruntime 1.32: the same model in standard operators.
        export_seconds: Seconds per phase of the export that made it (``"torch.onnx.export (dynamo)"``,
            ``"source model run"``, ..., ``"other"``, ``"total"``); empty for a loaded or derived one.
    """

    def __init__(self, exported: Exported, *, path: Path | None = None, weights_in_file: bool = False) -> None:
        # With weights_in_file, exported.model is the graph without its weights, which stay in ``path``.
        self._model: onnx.ModelProto | None = None if weights_in_file else exported.model
        self._light: onnx.ModelProto | None = exported.model if weights_in_file else None
        self.framework = exported.framework
        self.framework_version = exported.framework_version
        self.exporter = exported.exporter
        self.dynamic_axes: DynamicAxes = exported.dynamic_axes
        self.export_notes: tuple[str, ...] = tuple(exported.notes)
        self.export_seconds: dict[str, float] = dict(exported.phases)
        self.properties: dict[str, str] = dict(exported.properties)
        self.validation: _validation.ValidationReport | None = None
        self._sample = exported.sample
        self._reference: ReferenceFn | None = exported.reference
        self._reference_outputs = exported.reference_outputs
        self._validation_samples = dict(exported.validation_samples)  # more cases validate() runs
        self._file = _scratch.ModelFile(path)
        self.parent: Artifact | None = None
        self.quantization: QuantizationReport | None = None
        self.optimization: OptimizationReport | None = None
        self.generation: GenerationSpec | None = exported.generation
        self.labels: dict[str, list[str]] | None = exported.labels
        self.source_files: SourceFiles | None = exported.source_files
        self._fallback = _kept_on_disk(exported.fallback) if exported.fallback is not None else None
        self._make_fallback: Callable[[], Artifact | None] | None = None

    # -- facts ---------------------------------------------------------------------------
    @property
    def model(self) -> onnx.ModelProto:
        """The ``onnx.ModelProto`` (a large model :func:`load` left in its file is read on first use)."""
        if self._model is None:
            assert self._file.loaded_from is not None  # only load() leaves the weights in the file
            self._model, self._light = _files.load_model(self._file.loaded_from), None
        return self._model

    @property
    def input_names(self) -> list[str]:
        """Graph inputs, in order (initializers excluded)."""
        return [v.name for v in _graph.inputs(self._light or self.model)]

    @property
    def output_names(self) -> list[str]:
        """Graph outputs, in order."""
        return [o.name for o in (self._light or self.model).graph.output]

    @property
    def opset(self) -> int:
        """Version of the default ONNX domain (``ai.onnx``) the model uses."""
        return next((o.version for o in (self._light or self.model).opset_import if o.domain in ("", "ai.onnx")), 0)

    @property
    def reference(self) -> Reference:
        """What derived artifacts are measured against: the export sample, the source model, recorded outputs."""
        return Reference.of(self._sample, self._reference, self._reference_outputs, self.dynamic_axes)

    @property
    def fallback(self) -> Artifact | None:
        """This model in standard operators where this graph is fused for onnxruntime 1.32, else ``None``.

        ``ob.export`` fuses a decoder by default and keeps this graph, its weights in a scratch
        file, for runtimes without the fused operators (older onnxruntime, onnxruntime-web,
        transformers.js): ``save(layout="transformers.js")`` and :meth:`to_web` use it, and
        :meth:`compat` checks it where the fused graph fails. A quantized artifact quantizes its
        parent's fallback the same way on first use; an optimized one falls back to its parent.
        A loaded file has none.
        """
        if self._make_fallback is not None:
            self._fallback, self._make_fallback = self._make_fallback(), None
        return self._fallback

    @property
    def has_source(self) -> bool:
        """Whether the source model is at hand to compare against."""
        return self._reference is not None

    def __repr__(self) -> str:
        return (
            f"Artifact(framework={self.framework!r}, exporter={self.exporter!r}, opset={self.opset}, "
            f"inputs={self.input_names}, outputs={self.output_names}, dynamic_axes={self.dynamic_axes})"
        )

    # -- validation -----------------------------------------------------------------------
    def validate(
        self,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        samples: Iterable[Any] | None = None,
        raise_on_failure: bool = True,
        strict: bool = False,
    ) -> _validation.ValidationReport:
        """Check the model's structure, its dynamic axes, and its outputs against the source.

        1. ``onnx.checker`` with full shape inference.
        2. Every declared dynamic axis is symbolic in the graph.
        3. onnxruntime's outputs agree with the source framework within ``rtol``/``atol``
           on the export sample, on copies of it resized along each dynamic axis, and
           on ``samples`` (a detector: at three other aspect ratios instead of resized copies,
           detections matched as sets); beyond them, within float summation noise (128 ulp of
           the output's largest value), a float output passes as ``noise``, said in the report.
           A loaded artifact compares with the reference outputs recorded at export, if kept.
        4. For a decoder exported with its cache: greedy generation in onnxruntime gives the
           token ids the source model gave (recorded at export, left-padded prompts of two
           lengths), with the logits of every step within ``rtol``/``atol``. A mismatch
           names the step and the row.

        Args:
            rtol: Relative tolerance, as in ``numpy.allclose``. Default 1e-3; for a quantized
                artifact, a tolerance suited to its mode (0.1 for int8, 1e-2 for fp16).
            atol: Absolute tolerance. Default 1e-5; for a quantized artifact, 0.1 for int8
                and 1e-3 for fp16.
            samples: Extra inputs, each a dict by input name, a list in input order, or
                one array for single-input models. Needs the source model.
            raise_on_failure: Raise :class:`ValidationError` on failure; otherwise return
                the report with ``ok == False``.
            strict: Judge outputs by ``rtol``/``atol`` alone, with no allowance for noise.

        Returns:
            The report; also kept as ``artifact.validation``.
        """
        self.validation = _validating.validate(
            self,
            self._model_file(),
            cases=self._validation_samples if self.has_source else {},
            rtol=rtol,
            atol=atol,
            samples=samples,
            raise_on_failure=raise_on_failure,
            strict=strict,
        )
        return self.validation

    # -- quantization ---------------------------------------------------------------------
    def quantize(self, mode: QuantizationMode | str, **options: Unpack[QuantizeKwargs]) -> Artifact:
        """A quantized copy of this artifact, measured against it.

        Args:
            mode: A :class:`QuantizationMode` or its value. ``"dynamic"``: int8 weights,
                activations quantized at run time (Conv left in float; for text transformers
                also int8 embedding tables, and MatMuls that int8 would hurt kept as 8-bit
                weight-only). ``"static"``: QDQ with calibration. ``"qat"``: quantization-aware
                training of a PyTorch source. ``"fp16"``. ``"weight-only"``: ``MatMulNBits``
                block-wise weights (``bits``), float activations; ``"int4"`` and ``"int8-weight"``
                are its 4- and 8-bit forms, the usual choice for language models. ``"auto"``: try them all and
                return the best that meets ``tolerance`` by ``objective``.
            calibration: Samples for static quantization and for measuring: an iterable of
                samples shaped like the export sample, or one batched array. Without it, the
                export sample and its resized variants are used.
            method: Static calibration method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
            per_channel: Per-channel int8 weights (default on).
            op_types: Operator types to quantize (dynamic default: MatMul, Attention, LSTM;
                Gemm with constant weights is rewritten to MatMul first).
            exclude: Node names or operator types to leave in float.
            tolerance: Accuracy to keep: ``{"cosine": 0.99}`` (worst row cosine to the parent),
                ``"mean_cosine"``, ``"top1"``, ``"max_abs"``. A result that misses it is repaired by
                leaving the most sensitive nodes out; :class:`QuantizationError` if nothing helps.
                For ``"auto"`` the default is ``{"cosine": 0.99}``.
            train: For ``"qat"``: called with a copy of the PyTorch model holding
                fake-quantization modules; it should fine-tune it in place.
            keep_io_types: For ``"fp16"``: keep float32 inputs and outputs.
            objective: For ``"auto"``: ``"latency"`` or ``"size"``.
            allow_slower: Keep an int8 result that runs slower than the float model on this CPU.
                By default the float model is returned instead and the report says so.
            bits: For ``"weight-only"``: 8 or 4.
            block_size: For weight-only modes: weights per scale (a power of two >= 16).
            batch_sizes: Batches to compare latency at, besides 1, the measuring sample's and 8.

        Returns:
            A new :class:`Artifact` with ``.parent`` set and ``.quantization`` holding the
            report (settings, sizes, accuracy per output, nodes left in float, latency ratio,
            and for ``"auto"`` every candidate).

        Raises:
            InputError: Unknown mode or tolerance, or calibration data that does not fit the model.
            QuantizationError: The tolerance cannot be met, or a quantization tool failed.
        """
        return self._quantized(QuantizeOptions.of(mode, **options))

    def _quantized(self, options: QuantizeOptions) -> Artifact:
        """:meth:`quantize` with its options checked (what a pair calls for each of its graphs)."""
        from onnxbridge.quantize import _quantize

        result = _quantize.quantize(self.model, self.reference, self.framework, options)
        child = self._derive(result.model, {"quantization": result.report.mode.value}, result.source)
        child.quantization = result.report
        if self._fallback is not None or self._make_fallback is not None:  # derived only when asked for
            child._make_fallback = lambda: self.fallback._quantized(options) if self.fallback is not None else None
        if self.generation is not None:
            from onnxbridge.quantize import _generation_quality

            result.report.generation = _generation_quality.measure(
                self.session(providers=["cpu"], threads=1),
                child.session(providers=["cpu"], threads=1),
                self.generation,
                self.model,
            )
        return child

    def optimize(self, level: str = "extended", *, samples: Iterable[Any] | None = None) -> Artifact:
        """An optimized copy of this artifact (fused operators), measured against it.

        Args:
            level: ``"basic"``: onnxruntime's offline basic optimizations; standard operators,
                runs anywhere. ``"extended"``: onnxscript's transformer fusions (Attention,
                SkipLayerNormalization, BiasGelu, ...) and onnxruntime's extended optimizations;
                the result runs on onnxruntime only (``report.onnxruntime_only``).
            samples: Inputs to measure on (default: the export sample and its resized variants).

        Returns:
            A new :class:`Artifact` with ``.parent`` set and ``.optimization`` holding the report
            (fused operators by type, max abs error and latency ratio against the parent).
        """
        from onnxbridge.quantize import _data, _optimize

        feeds = _data.samples(self.model, self.reference, samples) if samples is not None or self._sample else []
        model, report = _optimize.optimize(self.model, feeds, level, source=self.source_files)
        child = self._derive(model, {"optimization": level})
        child.optimization = report
        child._make_fallback = lambda: self.fallback or self
        if child.generation is not None and _graph.shares_cache_buffers(model):  # generate() binds them once
            child.generation = dataclasses.replace(child.generation, shared_cache=True)
        return child

    def with_opset(self, opset: int, *, samples: Iterable[Any] | None = None) -> Artifact:
        """A copy at another opset of the default ONNX domain, validated against the source (if quantized: itself).

        ``onnx.version_converter`` converts; an operator that did not exist yet at ``opset`` is
        refused up front with the lowest opset the model can go to. Going down also lowers the IR
        version to the oldest that opset allows, so older runtimes accept the file.

        Args:
            opset: The target opset (7 up to what the installed onnx knows).
            samples: Extra inputs to validate on (needs the source model), as in :meth:`validate`.

        Returns:
            A new :class:`Artifact` with ``.parent`` set, already validated (``.validation``).

        Raises:
            InputError: ``opset`` is out of range, or the model uses an operator newer than it.
            ExportError: onnx's converter failed.
            ValidationError: the converted model's outputs differ from the source's.
        """
        from onnxbridge.graph import _opset

        model, notes = _opset.convert_opset(self.model, opset)
        own = None  # a quantized model differs from its source by design: hold the conversion to the model itself
        if "quantization" in self.properties:
            run = self.session(providers=["cpu"]).run
            own = Reference.of(self.reference.feeds(), lambda feeds: dict(run(feeds)), None, self.dynamic_axes)
        child = self._derive(model, {"opset": str(opset)}, own)
        child.export_notes = (*child.export_notes, *notes)
        child.validate(samples=samples)
        return child

    def compat(self, target: str) -> CompatReport:
        """What would fail on a deployment target, checked before deploying; nothing is changed.

        Args:
            target: ``"onnxruntime==1.17"`` (any release from 1.16: the IR version and opsets it
                loads and its CPU kernels, operator, version and types, as recorded from the
                release itself), ``"onnxruntime"`` (the installed one), ``"onnxruntime-web"``
                (the model run under Node.js by onnxruntime-web, outputs compared with Python
                onnxruntime's) or ``"opset=13"``.

        Returns:
            A :class:`CompatReport`: ``.ok``, ``.findings`` (each with the nodes, operator and a
            fix, such as the ``with_opset`` that resolves it, tried on a copy), ``.checked``.

        Raises:
            InputError: The target is not one of these, or a release onnxbridge has no record of.
            MissingDependencyError: ``"onnxruntime-web"`` without Node.js or onnxruntime-web.
        """
        return _deploying.compat(self, target)

    def _derive(
        self, model: onnx.ModelProto, properties: Mapping[str, str], source: Reference | None = None
    ) -> Artifact:
        """A child artifact; ``source`` replaces this one's reference as ground truth (QAT's trained model)."""
        truth = source if source is not None else self.reference
        exported = Exported(
            model=model,
            framework=self.framework,
            framework_version=self.framework_version,
            exporter=self.exporter,
            dynamic_axes=self.dynamic_axes,
            sample=truth.feeds(),
            reference=truth.run,
            reference_outputs=dict(truth.outputs) if truth.outputs is not None else None,
            notes=list(self.export_notes),
            properties={**self.properties, **properties},
            generation=self.generation,
            labels=self.labels,
            source_files=self.source_files,
        )
        child = Artifact(exported)
        child.parent = self
        return child

    # -- the browser ----------------------------------------------------------------------
    def to_web(
        self,
        directory: str | os.PathLike[str],
        *,
        title: str | None = None,
        runtime: str = "cdn",
        preprocess: Mapping[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        backend: str = "wasm",
        preflight: bool | str = "auto",
    ) -> Path:
        """Write a static site that runs this model in the browser with onnxruntime-web, in a Web Worker.

        Args:
            directory: A new (or empty) folder for the page, ``model.onnx`` and ``manifest.json``.
            title: Page title.
            runtime: ``"cdn"`` for a pinned onnxruntime-web from a public CDN, or the path of a
                local ``onnxruntime-web/dist`` folder to copy into the site (works offline).
            preprocess: For image inputs: ``scale`` (default 1/255), ``mean``, ``std`` (one value
                or one per channel) and ``invert``, applied to canvas pixels as training did.
            labels: Class names, one per column of the ``[batch, classes]`` output (default: the
                model's own, scikit-learn's ``classes_`` or transformers' ``id2label``).
            backend: ``"wasm"``, ``"webgpu"`` or ``"webgl"``; the page falls back to wasm where the
                device lacks it, and says which ran.
            preflight: Run the model under Node.js with onnxruntime-web first and compare with
                Python onnxruntime (``"auto"``: when Node.js and onnxruntime-web are found).

        Returns:
            The site folder (serve it with :func:`onnxbridge.serve_web` for multi-threading).

        Raises:
            WebExportError: The model is too large for WebAssembly memory, uses operators
                onnxruntime-web lacks, or the preflight failed. Nothing is written.
        """
        from onnxbridge.deploy import _web

        options = _web.WebOptions(title, runtime, preprocess, labels, backend, preflight)
        return _web.to_web(_deploying.web_model(self), directory, options)

    # -- running --------------------------------------------------------------------------
    def session(
        self,
        providers: Sequence[ProviderSpec] | str | None = None,
        *,
        strict: bool = False,
        threads: int | None = None,
        options: ort.SessionOptions | None = None,
    ) -> Session:
        """An onnxruntime session for this model.

        Args:
            providers: Execution providers in order of preference, by full name or
                short alias (``"cuda"``, ``"cpu"``, ``"tensorrt"``...), optionally as
                ``(name, options)`` pairs. ``None`` picks the best available
                accelerator, then CPU.
            strict: Raise :class:`ProviderError` instead of falling back when a
                requested provider is unavailable or fails to load.
            threads: Intra-op thread count (``None``: onnxruntime's default).
            options: An ``onnxruntime.SessionOptions`` to start from.

        Returns:
            A :class:`Session`; ``session.providers`` lists the providers really active.
        """
        return Session(self._model_file() or self.model, providers, strict=strict, threads=threads, options=options)

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        *,
        session: Session | None = None,
        **options: Unpack[GenerationKwargs],
    ) -> np.ndarray:
        """Generate tokens with a decoder exported with ``task="text-generation"``.

        The loop of ``transformers``' ``generate()`` for greedy search and sampling, on
        onnxruntime, with the KV cache kept in onnxruntime between steps, and the model's own
        ``generation_config`` applied as transformers applies it. Greedy output is the same as
        ``model.generate(..., do_sample=False)``.

        Args:
            input_ids: Prompt token ids, ``(batch, length)`` (or one prompt as ``(length,)``);
                pad shorter prompts on the left.
            attention_mask: 1 for tokens, 0 for left padding; default all ones.
            session: A session of this artifact to reuse (e.g. on another provider);
                default: a CPU session made for this call.
            **options: ``max_new_tokens`` (32), ``do_sample``, ``temperature``, ``top_k``,
                ``top_p``, ``seed``, ``eos_token_id``, ``pad_token_id``, ``num_beams``,
                ``repetition_penalty``, ``no_repeat_ngram_size``, ``min_new_tokens``: see
                :class:`~onnxbridge.GenerationOptions`; unset ones are the model's.

        Returns:
            The prompts followed by the new tokens, ``(batch, length + new)`` int64; rows that
            ended early are padded with ``pad_token_id``. Generation stops when every row ended.

        Raises:
            InputError: The artifact is not a decoder with a cache, or the prompts, mask or
                options are invalid.
            UnsupportedSettingError: The model's ``generation_config`` sets something this loop
                does not apply (beam search, typical sampling, ...); the message names it.
            InferenceError: onnxruntime failed during a step.
        """
        chosen = GenerationOptions.from_keywords(options)
        spec = self.generation or GenerationSpec("text-generation")
        return _loop.generate(
            session or self.session(providers=["cpu"]), spec, input_ids, attention_mask, chosen
        ).tokens

    def _model_file(self) -> Path | None:
        """A file holding this model for tools that take a path, or ``None`` when bytes will do."""
        if self._model is None:
            return self._file.loaded_from
        return self._file.path(self.model)

    # -- files ----------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike[str],
        *,
        external_data: bool | None = None,
        reference: bool = True,
        layout: str | None = None,
        tokenizer: Any = None,
    ) -> Path:
        """Write a standard ``.onnx`` file, or a folder a runtime loads, atomically, with onnxbridge's facts.

        Args:
            path: Destination file; a folder (created if missing) with ``layout``.
            external_data: Store weights in ``<name>.data`` beside the model; ``None``: only past 2 GB.
            reference: Embed the export sample and the source's outputs on it (when under 1 MiB).
            layout: ``"genai"``, ``"transformers.js"`` or ``"optimum"``: the graph and every file
                that runtime reads (``docs/files.md``); :class:`UnsupportedSettingError` if it cannot.
                A runtime that cannot load a fused graph gets :attr:`fallback`.
            tokenizer: A transformers tokenizer whose files go into the ``layout`` folder.

        Returns:
            The file (or folder) written.
        """
        _layouts.check_layout(layout, tokenizer)
        if layout is not None and (chosen := _deploying.for_layout(self, layout)) is not self:
            return chosen.save(
                path, external_data=external_data, reference=reference, layout=layout, tokenizer=tokenizer
            )
        _metadata.write(self.model, _deploying.file_facts(self, reference))
        if layout is None:
            return _files.save_model(self.model, path, external_data=external_data)
        facts = {"generation": self.generation, "source": self.source_files, "tokenizer": tokenizer}
        return _layouts.write(path, layout, self.model, external_data=external_data, **facts)


def load(path: str | os.PathLike[str]) -> Artifact:
    """An ``.onnx`` file as an :class:`Artifact` (public: :func:`onnxbridge.load`, which also reads folders)."""
    source = Path(path)
    unchecked: list[str] = []
    # A large model's weights stay in the file until something needs them in Python (validate,
    # quantize, ...): a session reads the file, so generating holds one copy, onnxruntime's.
    model, whole = _files.read_model(source, notes=unchecked, weights_above=_scratch.SCRATCH_BYTES)
    exported = _describe.describe_onnx(model)
    exported.notes.extend(note for note in unchecked if note not in exported.notes)
    return Artifact(exported, path=source, weights_in_file=not whole)


def _kept_on_disk(exported: Exported) -> Artifact:
    """An artifact of ``exported`` whose weights wait in a scratch file: no second copy in memory."""
    held = _scratch.ModelFile.scratch(exported.model)
    artifact = Artifact(
        dataclasses.replace(exported, model=_files.without_weights(exported.model)), weights_in_file=True
    )
    artifact._file = held
    return artifact
