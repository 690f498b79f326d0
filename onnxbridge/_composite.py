"""An export of two graphs that work together: an encoder and a decoder with its KV cache.

:class:`EncoderDecoderArtifact` is an :class:`Artifact` (its ``model`` and facts are the
decoder's) that also holds each graph as its own artifact in ``components``, so everything an
artifact offers works per graph (``art.encoder.session()``, ``art.decoder.quantize(...)``), and
the whole offers ``validate``, ``generate``, ``quantize``, ``save`` and ``ob.load`` of the folder.

A saved encoder-decoder is a folder: ``encoder.onnx``, ``decoder.onnx`` (each a standard ONNX
file with onnxbridge's metadata), ``onnxbridge.json`` (what the folder holds, the generation
settings) and ``generation.npz`` (the encoder inputs of the recorded greedy tokens).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge import _generation, _serialization, _validation
from onnxbridge._adapter import Exported
from onnxbridge._artifact import Artifact
from onnxbridge._errors import InputError, ModelFileError

if TYPE_CHECKING:
    import onnxruntime as ort

    from onnxbridge._providers import ProviderSpec
    from onnxbridge._session import Session
    from onnxbridge.quantize._types import QuantizationMode

__all__ = ["EncoderDecoderArtifact"]

MANIFEST = "onnxbridge.json"
RECORD = "generation.npz"
ROLES = ("encoder", "decoder")


class EncoderDecoderArtifact(Artifact):
    """An encoder graph and a decoder graph that generate together (BART, T5, Whisper, ...).

    Returned by :func:`onnxbridge.export` for encoder-decoder ``transformers`` models and by
    :func:`onnxbridge.load` of a saved folder. ``model``, ``input_names`` and the other facts
    inherited from :class:`Artifact` are the decoder's.

    Attributes:
        components: ``{"encoder": Artifact, "decoder": Artifact}``; each graph as an artifact
            of its own (validate, session, quantize, save one graph).
    """

    def __init__(self, exported: Exported, *, components: Mapping[str, Artifact] | None = None) -> None:
        super().__init__(exported)
        if components is None:
            parts = exported.components or {}
            components = {role: Artifact(part) for role, part in parts.items()}
        missing = [role for role in ROLES if role not in components]
        if missing:
            raise InputError(f"An encoder-decoder export needs an encoder and a decoder graph; {missing} missing.")
        self.components: dict[str, Artifact] = dict(components)

    @property
    def encoder(self) -> Artifact:
        """The encoder graph."""
        return self.components["encoder"]

    @property
    def decoder(self) -> Artifact:
        """The decoder graph (with its cache)."""
        return self.components["decoder"]

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
    ) -> _validation.ValidationReport:
        """Validate each graph (checker, symbolic axes, numeric parity) and greedy generation end to end.

        Checks and comparisons are prefixed with the graph they belong to. ``samples`` are
        not taken: validate one graph with ``art.encoder.validate(samples=...)``.
        """
        if samples is not None:
            raise InputError("validate(samples=...) takes one graph's inputs: use art.encoder.validate(samples=...).")
        reports = {
            role: part.validate(rtol=rtol, atol=atol, raise_on_failure=False) for role, part in self.components.items()
        }
        first = reports["decoder"]
        report = _validation.ValidationReport(rtol=first.rtol, atol=first.atol, facts=dict(first.facts))
        for role, part in reports.items():
            report.checks += [replace(c, name=f"{role}: {c.name}") for c in part.checks if c.name != "generation"]
            report.comparisons += [replace(c, case=f"{role} {c.case}") for c in part.comparisons]
            report.errors += [f"{role} {e}" for e in part.errors]
            report.skipped += [f"{role} {s}" for s in part.skipped]
        return self._conclude(report, self._replay, raise_on_failure)

    def _replay(self, record: _generation.GreedyRecord) -> _generation.Generated:
        if record.encoder_inputs is None or self.generation is None:
            raise InputError("the recorded generation has no encoder inputs")
        sessions = self.sessions(providers=["cpu"])
        return _generation.generate_seq2seq(
            sessions["encoder"],
            sessions["decoder"],
            self.generation,
            dict(record.encoder_inputs),
            decoder_input_ids=record.input_ids,
            keep_logits=True,
            max_new_tokens=record.steps,
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
        """Not for two graphs: use :meth:`sessions`, or ``art.encoder.session()`` / ``art.decoder.session()``."""
        raise InputError(
            "This export holds two graphs (an encoder and a decoder), so it has no single session: use "
            "art.sessions(...) for both, art.encoder.session() or art.decoder.session() for one, or art.generate()."
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

    def generate(  # type: ignore[override]
        self,
        inputs: Any,
        attention_mask: Any = None,
        *,
        decoder_input_ids: Any = None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        pad_token_id: int | None = None,
        sessions: Mapping[str, Session] | None = None,
    ) -> np.ndarray:
        """Encode ``inputs`` once, then generate with the decoder and its cache.

        Args:
            inputs: The encoder's main input (``input_ids`` for text, ``input_features`` for
                speech), or a dict of encoder inputs by name.
            attention_mask: For text: 1 for tokens, 0 for padding (either side).
            decoder_input_ids: The decoder's first tokens (default: the model's decoder start token).
            max_new_tokens: Most tokens to add after the decoder's first tokens.
            do_sample: Sample instead of taking the most likely token.
            temperature: Divides the logits before sampling.
            top_k: Sample among the ``top_k`` most likely tokens only.
            top_p: Sample among the most likely tokens whose probabilities add up to ``top_p``.
            seed: Seed of the sampler (numpy).
            eos_token_id: Token(s) that end a sequence; default: the model's.
            pad_token_id: Token written after a sequence ended; default: the model's.
            sessions: Sessions from :meth:`sessions` to reuse (default: CPU sessions for this call).

        Returns:
            The decoder sequences, starting with the decoder's first tokens (transformers' BART
            and T5 return the same; its Whisper returns them without the first token).
        """
        if self.generation is None:
            raise InputError("This export has no generation settings; export it with its task to generate.")
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
        return _generation.generate_seq2seq(
            encoder,
            runners["decoder"],
            self.generation,
            feeds,
            decoder_input_ids=decoder_input_ids,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        ).tokens

    # -- derived artifacts ----------------------------------------------------------------
    def quantize(self, mode: QuantizationMode | str, **options: Any) -> EncoderDecoderArtifact:
        """Quantize both graphs with the same mode and options (see :meth:`Artifact.quantize`).

        Each graph's report is on ``result.encoder.quantization`` / ``result.decoder.quantization``;
        ``result.quantization`` is the decoder's. ``validate()`` of the result reports its greedy
        agreement with the source without requiring it.
        """
        parts = {role: part.quantize(mode, **options) for role, part in self.components.items()}
        child = self._rebuilt(parts)
        child.parent = self
        child.quantization = parts["decoder"].quantization
        return child

    def optimize(self, level: str = "extended", *, samples: Any = None) -> Artifact:
        """Not for two graphs at once: optimize one with ``art.encoder.optimize()`` or ``art.decoder.optimize()``."""
        raise InputError("Optimize one graph at a time: art.encoder.optimize() or art.decoder.optimize().")

    def to_web(self, directory: Any, **options: Any) -> Path:
        """Not supported: the browser page runs single-graph models."""
        raise InputError("to_web() runs single-graph models; an encoder-decoder needs a generation loop in the page.")

    def _rebuilt(self, parts: Mapping[str, Artifact]) -> EncoderDecoderArtifact:
        return EncoderDecoderArtifact.assemble(parts, self.generation, self.export_notes, self.properties)

    @classmethod
    def assemble(
        cls,
        parts: Mapping[str, Artifact],
        generation: _generation.GenerationSpec | None,
        notes: Sequence[str] = (),
        properties: Mapping[str, str] | None = None,
    ) -> EncoderDecoderArtifact:
        """The pair from its two graphs; the facts it shows are the decoder's."""
        decoder = parts["decoder"]
        exported = Exported(
            model=decoder.model,
            framework=decoder.framework,
            framework_version=decoder.framework_version,
            exporter=decoder.exporter,
            dynamic_axes=decoder.dynamic_axes,
            notes=list(notes or decoder.export_notes),
            properties={**(properties or {}), **decoder.properties},
            generation=generation,
        )
        return cls(exported, components=parts)

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
        _serialization.remove_stale_temporaries(parent)
        try:
            staging = Path(tempfile.mkdtemp(prefix=_serialization.TEMP_PREFIX, dir=parent))
        except OSError as err:
            raise ModelFileError(f"Cannot write {str(target)!r}: {err.strerror or err}. Nothing was written.") from err
        try:
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
        finally:
            shutil.rmtree(staging, ignore_errors=True)
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
            spec = _generation.GenerationSpec.from_json(manifest["generation"])
            if spec.record is not None and (folder / RECORD).exists():
                with np.load(folder / RECORD) as stored:
                    spec.record.encoder_inputs = {k: stored[k] for k in stored.files}
            elif spec.record is not None:
                spec.record = None  # tokens without the inputs they came from cannot be replayed
        return cls.assemble(parts, spec)


def _replaceable(folder: Path) -> bool:
    return folder.is_dir() and ((folder / MANIFEST).exists() or not any(folder.iterdir()))


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    aside = None
    try:
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=_serialization.TEMP_PREFIX, dir=target.parent))
            os.replace(target, aside / "old")
        os.replace(staging, target)
    except OSError as err:
        if aside is not None and (aside / "old").exists() and not target.exists():
            os.replace(aside / "old", target)  # put the previous export back
        raise ModelFileError(f"Cannot write {str(target)!r}: {err.strerror or err}. Nothing was changed.") from err
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def is_export_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by :meth:`EncoderDecoderArtifact.save`."""
    return path.is_dir() and (path / MANIFEST).exists()
