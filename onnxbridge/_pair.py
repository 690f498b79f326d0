"""An export of two graphs that work together: an encoder and a decoder with its KV cache.

:class:`EncoderDecoderArtifact` holds each graph as an :class:`Artifact` of its own (composition,
not inheritance): everything one graph offers works per graph (``pair.encoder.session()``,
``pair.decoder.quantize(...)``), and the pair itself offers what makes sense for both at once:
``validate``, ``generate``, ``quantize``, ``optimize``, ``with_opset``, ``compat``, ``save`` and
``ob.load`` of the folder. What only one graph can do (``session``, ``to_web``) is refused with a
typed error that names the call to use instead.

A saved encoder-decoder is a folder: ``encoder.onnx``, ``decoder.onnx`` (each a standard ONNX
file with onnxbridge's metadata), ``onnxbridge.json`` (what the folder holds, the generation
settings) and ``generation.npz`` (the encoder inputs of the recorded greedy tokens).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np

from onnxbridge._artifact import Artifact
from onnxbridge.checks import _validation
from onnxbridge.checks._compat_report import CompatFinding, CompatReport
from onnxbridge.core._errors import InputError, ModelFileError
from onnxbridge.exporting._adapter import Exported
from onnxbridge.generation import _check, _loop
from onnxbridge.generation._decoding import Generated
from onnxbridge.generation._spec import GREEDY, GenerationKwargs, GenerationOptions, GenerationSpec, GreedyRecord
from onnxbridge.graph import _partials
from onnxbridge.quantize._options import QuantizeKwargs, QuantizeOptions

if TYPE_CHECKING:
    import onnxruntime as ort

    from onnxbridge.quantize._types import QuantizationMode, QuantizationReport
    from onnxbridge.running._providers import ProviderSpec
    from onnxbridge.running._session import Session

__all__ = ["EncoderDecoderArtifact"]

MANIFEST = "onnxbridge.json"
RECORD = "generation.npz"
ROLES = ("encoder", "decoder")
_ART = re.compile(r"\bart\.")  # fixes say art.with_opset(...); for the pair they are pair.with_opset(...)


class EncoderDecoderArtifact:
    """An encoder graph and a decoder graph that generate together (BART, T5, Whisper, ...).

    Returned by :func:`onnxbridge.export` for encoder-decoder ``transformers`` models and by
    :func:`onnxbridge.load` of a saved folder. It is not an :class:`Artifact`: it holds two.

    Attributes:
        components: ``{"encoder": Artifact, "decoder": Artifact}``; each graph as an artifact
            of its own (validate, session, quantize, save one graph).
        generation: The model's generation settings and the source's recorded greedy tokens.
        export_notes: What onnxbridge did on the user's behalf during export.
        properties: Facts of the export (``{"task": "text2text-generation", ...}``).
        validation: The last :class:`ValidationReport` of the pair, or ``None``.
        parent: The pair this one was quantized, optimized or converted from, or ``None``.
    """

    def __init__(
        self,
        components: Mapping[str, Artifact],
        generation: GenerationSpec | None,
        *,
        notes: Sequence[str] = (),
        properties: Mapping[str, str] | None = None,
    ) -> None:
        missing = [role for role in ROLES if role not in components]
        if missing:
            raise InputError(f"An encoder-decoder export needs an encoder and a decoder graph; {missing} missing.")
        self.components: dict[str, Artifact] = {role: components[role] for role in ROLES}
        self.generation = generation
        self.export_notes: tuple[str, ...] = tuple(notes or self.decoder.export_notes)
        self.properties: dict[str, str] = {**(properties or {}), **self.decoder.properties}
        self.validation: _validation.ValidationReport | None = None
        self.parent: EncoderDecoderArtifact | None = None

    @classmethod
    def from_exported(cls, exported: Exported) -> EncoderDecoderArtifact:
        """The pair from an adapter's export of both graphs (``exported.components``)."""
        parts = {role: Artifact(part) for role, part in (exported.components or {}).items()}
        return cls(parts, exported.generation, notes=exported.notes, properties=exported.properties)

    # -- facts ---------------------------------------------------------------------------
    @property
    def encoder(self) -> Artifact:
        """The encoder graph."""
        return self.components["encoder"]

    @property
    def decoder(self) -> Artifact:
        """The decoder graph (with its cache)."""
        return self.components["decoder"]

    @property
    def framework(self) -> str:
        """Framework the model came from."""
        return self.decoder.framework

    @property
    def framework_version(self) -> str:
        """Version of that framework at export time."""
        return self.decoder.framework_version

    @property
    def exporter(self) -> str:
        """The converter that produced the graphs."""
        return self.decoder.exporter

    @property
    def quantization(self) -> QuantizationReport | None:
        """The decoder's quantization report (the encoder's: ``pair.encoder.quantization``)."""
        return self.decoder.quantization

    def __repr__(self) -> str:
        return (
            f"EncoderDecoderArtifact(framework={self.framework!r}, task={self.properties.get('task')!r}, "
            f"encoder inputs={self.encoder.input_names}, decoder inputs={self.decoder.input_names[:3]} + cache)"
        )

    # -- validation -----------------------------------------------------------------------
    def validate(
        self,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        samples: Any = None,
        raise_on_failure: bool = True,
        strict: bool = False,
    ) -> _validation.ValidationReport:
        """Validate each graph (checker, symbolic axes, numeric parity) and greedy generation end to end.

        Checks and comparisons are prefixed with the graph they belong to. ``samples`` are
        not taken: validate one graph with ``pair.encoder.validate(samples=...)``.
        """
        if samples is not None:
            raise InputError("validate(samples=...) takes one graph's inputs: use pair.encoder.validate(samples=...).")
        reports = {
            role: part.validate(rtol=rtol, atol=atol, raise_on_failure=False, strict=strict)
            for role, part in self.components.items()
        }
        first = reports["decoder"]
        report = _validation.ValidationReport(rtol=first.rtol, atol=first.atol, strict=strict, facts=dict(first.facts))
        for role, part in reports.items():
            report.checks += [replace(c, name=f"{role}: {c.name}") for c in part.checks if c.name != "generation"]
            report.comparisons += [replace(c, case=f"{role} {c.case}") for c in part.comparisons]
            report.errors += [f"{role} {e}" for e in part.errors]
            report.skipped += [f"{role} {s}" for s in part.skipped]
        quantization = self.decoder.quantization
        self.validation = _check.conclude(
            report,
            self.generation,
            self._replay,
            quantized=quantization.mode.value if quantization is not None else None,
            framework=self.framework,
            raise_on_failure=raise_on_failure,
        )
        return self.validation

    def _replay(self, record: GreedyRecord) -> Generated:
        if record.encoder_inputs is None or self.generation is None:
            raise InputError("the recorded generation has no encoder inputs")
        sessions = self.sessions(providers=["cpu"])
        return _loop.generate_seq2seq(
            sessions["encoder"],
            sessions["decoder"],
            self.generation,
            dict(record.encoder_inputs),
            decoder_input_ids=record.input_ids,
            options=GREEDY.with_steps(record.steps),
            keep_logits=True,
        )

    # -- running --------------------------------------------------------------------------
    def session(
        self,
        providers: Sequence[ProviderSpec] | str | None = None,
        *,
        strict: bool = False,
        threads: int | None = None,
        options: ort.SessionOptions | None = None,
    ) -> Session:
        """Not for two graphs: use :meth:`sessions`, or ``pair.encoder.session()`` / ``pair.decoder.session()``."""
        raise InputError(
            "This export holds two graphs (an encoder and a decoder), so it has no single session: use "
            "pair.sessions(...) for both, pair.encoder.session() or pair.decoder.session() for one, or pair.generate()."
        )

    def sessions(
        self,
        providers: Sequence[ProviderSpec] | str | None = None,
        *,
        strict: bool = False,
        threads: int | None = None,
    ) -> dict[str, Session]:
        """One onnxruntime session per graph, by role; arguments as for :meth:`Artifact.session`."""
        return {role: part.session(providers, strict=strict, threads=threads) for role, part in self.components.items()}

    def generate(
        self,
        inputs: Any,
        attention_mask: Any = None,
        *,
        decoder_input_ids: Any = None,
        sessions: Mapping[str, Session] | None = None,
        **options: Unpack[GenerationKwargs],
    ) -> np.ndarray:
        """Encode ``inputs`` once, then generate with the decoder and its cache.

        Args:
            inputs: The encoder's main input (``input_ids`` for text, ``input_features`` for
                speech), or a dict of encoder inputs by name.
            attention_mask: For text: 1 for tokens, 0 for padding (either side).
            decoder_input_ids: The decoder's first tokens (default: the model's decoder start token).
            sessions: Sessions from :meth:`sessions` to reuse (default: CPU sessions for this call).
            **options: As for :meth:`Artifact.generate` (:class:`~onnxbridge.GenerationOptions`);
                ``max_new_tokens`` counts the tokens after the decoder's first ones.

        Returns:
            The decoder sequences, starting with the decoder's first tokens (transformers' BART
            and T5 return the same; its Whisper returns them without the first token).
        """
        if self.generation is None:
            raise InputError("This export has no generation settings; export it with its task to generate.")
        chosen = GenerationOptions.from_keywords(options)
        runners = dict(sessions) if sessions is not None else self.sessions(providers=["cpu"])
        encoder = runners["encoder"]
        if isinstance(inputs, Mapping):
            feeds = {str(k): np.asarray(v) for k, v in inputs.items()}
        else:
            feeds = {encoder.input_names[0]: np.asarray(inputs)}
        if attention_mask is not None:
            feeds["attention_mask"] = np.asarray(attention_mask)
        if "attention_mask" in encoder.input_names and "attention_mask" not in feeds:
            main = next(iter(feeds.values()))
            feeds["attention_mask"] = np.ones(main.shape[:2], dtype=np.int64)
        return _loop.generate_seq2seq(
            encoder, runners["decoder"], self.generation, feeds, decoder_input_ids=decoder_input_ids, options=chosen
        ).tokens

    # -- derived pairs --------------------------------------------------------------------
    def quantize(self, mode: QuantizationMode | str, **options: Unpack[QuantizeKwargs]) -> EncoderDecoderArtifact:
        """Quantize both graphs with the same mode and options (see :meth:`Artifact.quantize`).

        Each graph's report is on ``result.encoder.quantization`` / ``result.decoder.quantization``;
        ``result.quantization`` is the decoder's. ``validate()`` of the result reports its greedy
        agreement with the source without requiring it.
        """
        checked = QuantizeOptions.of(mode, **options)
        return self._derived(lambda part: part._quantized(checked))

    def optimize(self, level: str = "extended", *, samples: Any = None) -> EncoderDecoderArtifact:
        """Optimize both graphs (see :meth:`Artifact.optimize`), each measured against its parent graph.

        ``samples`` are not taken: they are one graph's inputs (``pair.encoder.optimize(samples=...)``).
        Each graph's report is on ``result.encoder.optimization`` / ``result.decoder.optimization``.
        """
        if samples is not None:
            raise InputError("optimize(samples=...) takes one graph's inputs: use pair.encoder.optimize(samples=...).")
        return self._derived(lambda part: part.optimize(level))

    def with_opset(self, opset: int, *, samples: Iterable[Any] | None = None) -> EncoderDecoderArtifact:
        """Both graphs at another opset (see :meth:`Artifact.with_opset`), then greedy generation validated end to end.

        Each graph is validated against its source as it is converted; the result's ``validation``
        is the pair's (both graphs and generation). ``samples`` are not taken (one graph's inputs).

        Raises:
            InputError: ``opset`` is out of range for either graph, or ``samples`` were given.
            ValidationError: a converted graph, or the pair's generation, differs from the source.
        """
        if samples is not None:
            raise InputError(
                "with_opset(samples=...) takes one graph's inputs: use pair.encoder.with_opset(opset, samples=...)."
            )
        child = self._derived(lambda part: part.with_opset(opset))
        child.validate()
        return child

    def compat(self, target: str) -> CompatReport:
        """What would fail on a deployment target, for both graphs (see :meth:`Artifact.compat`).

        Findings name the graph they concern; the fixes suggested for the pair (such as
        ``pair.with_opset(17)``) apply to both graphs.
        """
        reports = {role: part.compat(target) for role, part in self.components.items()}
        first = reports["decoder"]
        merged = CompatReport(first.target)
        for role, report in reports.items():
            merged.findings += [
                CompatFinding(f"{role}: {f.problem}", _ART.sub("pair.", f.fix), f.op_type, f.domain, f.nodes)
                for f in report.findings
            ]
            merged.notes += [f"{role}: {note}" for note in report.notes]
        merged.checked = [f"both graphs: {c}" for c in first.checked]
        merged.not_checked = list(first.not_checked)
        return merged

    def to_web(self, directory: Any, **options: Any) -> Path:
        """Not supported: the browser page runs single-graph models."""
        raise InputError(
            "to_web() runs single-graph models; an encoder-decoder needs a generation loop in the page. Write one "
            "graph with pair.encoder.to_web(folder), or deploy the pair with onnxruntime-genai or transformers.js."
        )

    def _derived(self, make: Callable[[Artifact], Artifact]) -> EncoderDecoderArtifact:
        """A new pair whose graphs are ``make`` of this pair's, with ``parent`` set."""
        parts = {role: make(part) for role, part in self.components.items()}
        child = EncoderDecoderArtifact(parts, self.generation, notes=self.export_notes, properties=self.properties)
        child.parent = self
        return child

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, external_data: bool | None = None, reference: bool = True) -> Path:
        """Write the folder (``encoder.onnx``, ``decoder.onnx``, ``onnxbridge.json``, ``generation.npz``).

        The folder is written beside the target under a temporary name and renamed into place;
        an existing folder is replaced only if it holds an onnxbridge export (or is empty).
        """
        target = Path(path)
        if target.exists() and not _replaceable(target):
            raise ModelFileError(
                f"{str(target)!r} exists and is not an onnxbridge export folder; choose a new folder name, or "
                "remove it first. Nothing was written."
            )
        parent = target.parent if str(target.parent) else Path(".")
        _partials.remove_orphans(parent)
        with contextlib.ExitStack() as stack:  # the partial folder is removed on leaving, and its lock let go
            try:
                staging = stack.enter_context(_partials.partial_folder(parent))
            except OSError as err:
                raise ModelFileError(
                    f"Cannot write {str(target)!r}: {err.strerror or err}. Nothing was written."
                ) from err
            for role, part in self.components.items():
                part.save(staging / f"{role}.onnx", external_data=external_data, reference=reference)
            manifest: dict[str, Any] = {
                "format": "onnxbridge encoder-decoder",
                "components": {role: f"{role}.onnx" for role in self.components},
                "task": self.properties.get("task"),
                "generation": self.generation.to_json() if self.generation is not None else None,
            }
            record = self.generation.record if self.generation is not None else None
            if record is not None and record.encoder_inputs is not None:
                np.savez(staging / RECORD, **record.encoder_inputs)  # type: ignore[arg-type]
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            _swap_into_place(staging, target)
        return target

    @classmethod
    def load(cls, folder: Path) -> EncoderDecoderArtifact:
        """Read a folder written by :meth:`save`."""
        from onnxbridge._artifact import load as load_file

        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            parts = {role: load_file(folder / name) for role, name in manifest["components"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelFileError(
                f"{str(folder)!r} is not a readable onnxbridge encoder-decoder folder ({err}). It should hold "
                f"{MANIFEST}, encoder.onnx and decoder.onnx as Artifact.save wrote them."
            ) from err
        spec = None
        if manifest.get("generation") is not None:
            spec = GenerationSpec.from_json(manifest["generation"])
            if spec.record is not None and (folder / RECORD).exists():
                with np.load(folder / RECORD) as stored:
                    spec.record.encoder_inputs = {k: stored[k] for k in stored.files}
            elif spec.record is not None:
                spec.record = None  # tokens without the inputs they came from cannot be replayed
        return cls(parts, spec)


def _replaceable(folder: Path) -> bool:
    return folder.is_dir() and ((folder / MANIFEST).exists() or not any(folder.iterdir()))


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    with contextlib.ExitStack() as stack:
        aside = None
        try:
            if target.exists():
                aside = stack.enter_context(_partials.partial_folder(target.parent))  # removed on leaving
                os.replace(target, aside / "old")
            os.replace(staging, target)
        except OSError as err:
            if aside is not None and (aside / "old").exists() and not target.exists():
                os.replace(aside / "old", target)  # put the previous export back
            raise ModelFileError(f"Cannot write {str(target)!r}: {err.strerror or err}. Nothing was changed.") from err


def is_export_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by :meth:`EncoderDecoderArtifact.save`."""
    return path.is_dir() and (path / MANIFEST).exists()
