"""Hugging Face ``transformers`` models: the task decides what is exported, the config builds the inputs.

* ``task="text-generation"`` (the default for causal LMs): the decoder with its KV cache, one
  graph for every step, ready for :meth:`onnxbridge.Artifact.generate`.
* Encoder tasks (feature extraction, classification, fill-mask, question answering, image and
  audio models): the model's forward as it is, exported by the PyTorch adapter. Without a
  sample, inputs are built from the config (vocabulary size, image size, ...) with dynamic
  ``batch_size`` and ``sequence_length`` axes.

The task defaults to the one ``transformers``' auto classes assign to the model's class.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from onnxbridge.adapters import _hf_decoder, _hf_seq2seq
from onnxbridge.adapters.pytorch import TorchAdapter
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import InputError
from onnxbridge.core._types import SourceFiles
from onnxbridge.exporting._adapter import Exported, ExportRequest, check_options

_OPTIONS = ("task", "exporter", "export_kwargs", "fused")

# Task -> the transformers auto-class mappings whose model classes perform it, most specific first.
TASKS: dict[str, tuple[str, ...]] = {
    "text-generation": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "text2text-generation": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",),
    "automatic-speech-recognition": ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "MODEL_FOR_CTC_MAPPING_NAMES"),
    "text-classification": ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",),
    "token-classification": ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",),
    "fill-mask": ("MODEL_FOR_MASKED_LM_MAPPING_NAMES",),
    "question-answering": ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",),
    "image-classification": ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",),
    "audio-classification": ("MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",),
    "feature-extraction": ("MODEL_MAPPING_NAMES",),
}
# Tasks whose export is a generation loop over an encoder and a decoder with cache.
ENCODER_DECODER_TASKS = ("text2text-generation", "automatic-speech-recognition")
BATCH, SEQUENCE = "batch_size", "sequence_length"


def _transformers() -> Any:
    return require("transformers", purpose="Exporting a transformers model", extra="transformers")


class TransformersAdapter:
    """Exports ``transformers.PreTrainedModel`` models, with or without a sample.

    Options (keyword arguments of :func:`onnxbridge.export`):
        task: What the export is for (see :data:`TASKS`); default: the task of the model's class.
        exporter, export_kwargs: As for PyTorch models (encoder tasks; generation uses dynamo).
        fused: For ``task="text-generation"``: fuse the decoder for onnxruntime 1.32+ (``GroupQueryAttention``
            with the cache inside, packed QKV, rotary caches), kept only where its greedy tokens are the
            source's. Default ``True`` where the installed onnxruntime runs it; the graph of standard
            operators, which every runtime loads, stays at hand as ``art.fallback``. ``False``: that
            graph only.
    """

    framework = "transformers"
    module_roots = ("transformers",)

    def accepts(self, model: object) -> bool:
        """Any ``transformers.PreTrainedModel``."""
        return isinstance(model, _transformers().PreTrainedModel)

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Export for the requested (or the model's own) task."""
        check_options(request.options, _OPTIONS, "transformers")
        tasks = tasks_of(model)
        task = request.options.get("task") or tasks[0]
        if task not in TASKS:
            raise InputError(
                f"task={task!r} is not a task onnxbridge knows. For {type(model).__name__}: {', '.join(tasks)}. "
                f"All tasks: {', '.join(TASKS)}."
            )
        if task not in tasks:
            raise InputError(
                f"{type(model).__name__} cannot do task={task!r}: its class has no head for it. Tasks for this "
                f"model: {', '.join(tasks)}. For {task!r}, load the model with the matching auto class "
                f"(e.g. AutoModelForCausalLM for text-generation)."
            )
        notes: list[str] = []
        if task == "text2text-generation" and not model.config.is_encoder_decoder:
            # Listed among seq2seq models but one decoder (speech and audio LLMs with their own encoders):
            # its text generation is the decoder's, with the cache.
            notes.append("text2text-generation on a decoder-only model: exported as text-generation (the decoder)")
            task = "text-generation"
        generating = task == "text-generation" or (task in ENCODER_DECODER_TASKS and model.config.is_encoder_decoder)
        given = [k for k in ("dynamic_axes", "input_names", "output_names") if getattr(request, k) is not None]
        if generating and given:
            raise InputError(
                f"task={task!r} names its graphs' inputs, outputs and dynamic axes itself (input_ids, "
                f"past_key_values.{{i}}.key, ... with batch_size, sequence_length and past_sequence_length axes), "
                f"so it does not take {', '.join(given)}; drop {'it' if len(given) == 1 else 'them'}."
            )
        if "fused" in request.options and task != "text-generation":
            raise InputError(f"fused= applies to task='text-generation' (a decoder with its cache), not {task!r}.")
        if generating and request.options.get("exporter", "auto") not in ("auto", "dynamo"):
            raise InputError(f"task={task!r} exports with the dynamo exporter only; drop exporter=.")
        if task == "text-generation":
            exported = _hf_decoder.export_decoder(model, request, notes)
        elif generating:
            exported = _hf_seq2seq.export_seq2seq(model, request, task, notes)
        else:
            exported = self._export_forward(model, request, task, notes)
        exported.source_files = source_files(model)
        if exported.fallback is not None:
            exported.fallback.source_files = exported.source_files
        return exported

    def _export_forward(self, model: Any, request: ExportRequest, task: str, notes: list[str]) -> Exported:
        sample, axes = request.sample, request.dynamic_axes
        if sample is None:
            sample, made_axes = dummy_inputs(model)
            axes = axes if axes is not None else made_axes
            shapes = ", ".join(f"{name} {'x'.join(map(str, t.shape))}" for name, t in sample.items())
            notes.append(f"no sample given: inputs built from the config ({shapes}), dynamic axes {made_axes}")
        options = {k: v for k, v in request.options.items() if k != "task"}
        source = model
        if _returns_cache(model):
            source = _without_cache(model)
            own = [t for t in tasks_of(model) if t == "text-generation" or t in ENCODER_DECODER_TASKS]
            if own:
                hint = f"export with task={own[0]!r}"
            elif model.config.is_encoder_decoder:
                hint = "export the model with its head (AutoModelForSeq2SeqLM) and task='text2text-generation'"
            else:
                hint = "export the model with a language-model head (AutoModelForCausalLM) and task='text-generation'"
            notes.append(
                f"exported forward() without the KV cache (use_cache=False) for task={task!r}: the graph computes "
                f"every position from scratch; for generation with the cache, {hint}"
            )
        inner = ExportRequest(
            sample=sample,
            dynamic_axes=axes,
            input_names=request.input_names,
            output_names=request.output_names,
            opset=request.opset,
            options=options,
        )
        with _hf_decoder.exportable_experts(model, notes):
            exported = TorchAdapter().export(source, inner)
        exported.framework = "transformers"
        exported.framework_version = _transformers().__version__
        exported.notes = notes + exported.notes
        exported.properties = {**exported.properties, "task": task}
        id2label = getattr(model.config, "id2label", None) or {}
        if "classification" in task and id2label and len(exported.model.graph.output) == 1:
            names = [str(id2label[i]) for i in sorted(id2label)]
            exported.labels = {exported.model.graph.output[0].name: names}
        return exported


def _returns_cache(model: Any) -> bool:
    """Whether ``forward()`` returns a cache object by default (decoders, encoder-decoders with ``use_cache``)."""
    params = inspect.signature(model.forward).parameters
    takes = "use_cache" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    config = model.config
    uses = getattr(config, "use_cache", None) or getattr(config.get_text_config(), "use_cache", None)
    return bool(takes and uses)


def _without_cache(model: Any) -> Any:
    """``model`` called with ``use_cache=False``: its outputs are tensors only (no cache object ONNX cannot carry)."""
    torch: Any = require("torch", purpose="Exporting a transformers model")

    class WithoutCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.model(*args, **kwargs, use_cache=False)

    wrapper = WithoutCache()
    # Samples bind to the model's own parameters (names, order), as if it were exported itself.
    WithoutCache.forward.__signature__ = inspect.signature(type(model).forward)  # type: ignore[attr-defined]
    return wrapper


def tasks_of(model: Any) -> list[str]:
    """Tasks ``model`` can be exported for, its class's own task first; feature extraction always."""
    from transformers.models.auto import modeling_auto

    classes = {cls.__name__ for cls in type(model).__mro__}
    found = []
    for task, mappings in TASKS.items():
        for mapping in mappings:
            names: set[str] = set()
            for value in getattr(modeling_auto, mapping, {}).values():
                names.update((value,) if isinstance(value, str) else value)
            if classes & names and task not in found:
                found.append(task)
    if "feature-extraction" not in found:
        found.append("feature-extraction")
    return found


def dummy_inputs(model: Any) -> tuple[dict[str, Any], DynamicAxes]:
    """Inputs for ``model`` built from its config, and their dynamic axes."""
    torch = require("torch", purpose="Exporting a transformers model")
    config = model.config
    main = getattr(model, "main_input_name", "input_ids")
    params = inspect.signature(model.forward).parameters
    generator = torch.Generator().manual_seed(0)
    batch, length = 2, 8
    if main == "input_ids":
        vocab = int(config.get_text_config().vocab_size)
        sample = {"input_ids": torch.randint(0, vocab, (batch, length), generator=generator)}
        if "attention_mask" in params:
            sample["attention_mask"] = torch.ones((batch, length), dtype=torch.long)
        if "token_type_ids" in params and getattr(config, "type_vocab_size", None):
            sample["token_type_ids"] = torch.zeros((batch, length), dtype=torch.long)
        return sample, {name: {0: BATCH, 1: SEQUENCE} for name in sample}
    if main == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        size = getattr(vision, "image_size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)[:2]
        channels = int(getattr(vision, "num_channels", 3))
        pixels = torch.randn((batch, channels, height, width), generator=generator)
        return {"pixel_values": pixels}, {"pixel_values": {0: BATCH}}
    if main == "input_values":
        rate = int(getattr(config, "sampling_rate", None) or 16000)
        audio = 0.1 * torch.randn((batch, rate), generator=generator)
        return {"input_values": audio}, {"input_values": {0: BATCH, 1: SEQUENCE}}
    raise InputError(
        f"onnxbridge cannot build inputs for {type(model).__name__} (main input {main!r}) from its config. "
        "Pass a sample: a dict of tensors by forward() parameter name, shaped like real inputs."
    )


def source_files(model: Any) -> SourceFiles:
    """``config.json`` and ``generation_config.json`` as ``save_pretrained`` writes them, and the model's folder."""
    config = json.loads(model.config.to_json_string())
    config["architectures"] = [type(model).__name__]  # as save_pretrained records it
    configs: dict[str, dict[str, Any]] = {"config.json": config}
    generation = getattr(model, "generation_config", None)
    if generation is not None and model.can_generate():
        configs["generation_config.json"] = json.loads(generation.to_json_string())
    where = getattr(model, "name_or_path", "") or ""
    folder = str(Path(where).resolve()) if where and Path(where).is_dir() else None
    return SourceFiles(configs=configs, folder=folder)
