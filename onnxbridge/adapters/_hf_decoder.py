"""Decoder language models exported with their KV cache: one graph for every generation step.

``transformers`` models keep their cache in a ``DynamicCache`` object, which ONNX cannot
carry. A small wrapper module takes the cache as flat tensors, rebuilds the model's own
``DynamicCache`` from them (``DynamicCache.update``, the call the model makes itself), runs
the model unchanged and returns the updated cache as flat tensors again. Attention is the
model's own code; nothing is re-implemented.

The past sequence axis may be 0, so the same graph runs the first step (the prompt, empty
past) and every later step (one token, the past fed back).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from onnxbridge.adapters import _hf_cache, _hf_first_step, _hf_fused
from onnxbridge.adapters._hf_experts import exportable_experts
from onnxbridge.adapters._torch_onnx_fixes import complex_unsqueeze, exact_constant_rules, translations
from onnxbridge.adapters.pytorch import captured_warnings, choose_opset, inference, summary, to_numpy
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._errors import ExportError, InputError, ModelConfigError
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest
from onnxbridge.generation._spec import GenerationSpec, GreedyRecord, ModelSettings
from onnxbridge.graph import _graph
from onnxbridge.graph._branches import first_step_branch

BATCH, SEQUENCE, PAST = "batch_size", "sequence_length", "past_sequence_length"
TOTAL = f"{PAST} + {SEQUENCE}"
PAST_AND_ONE = f"{PAST} + 1"
RECORD_STEPS = 8  # greedy steps recorded from the source, replayed by validate()


def export_decoder(model: Any, request: ExportRequest, notes: list[str]) -> Exported:
    """Export a causal LM with its cache as one graph, and record greedy tokens to validate it against."""
    from onnxbridge.core._deps import require

    torch = require("torch", purpose="Exporting a transformers model")
    transformers = require("transformers", purpose="Exporting a transformers model", extra="transformers")
    layout = _hf_cache.probe(torch, transformers, model)
    position_ids = "position_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask", *(["position_ids"] if position_ids else []), *layout.input_names()]
    out_names = ["logits", *layout.output_names()]
    one_token = layout.recurrent  # state-space layers: a graph of transformers' one-token recurrent form
    sample = _sample(torch, model, layout, position_ids, new=1 if one_token else 3)
    axes = _axes(names, out_names, layout)
    opset = choose_opset(request.opset)
    step = _hf_cache.step_module(torch, transformers, model, layout, position_ids)
    extra = dict(request.options.get("export_kwargs", {}))
    what = f"{type(model).__name__} {'with its cache' if layout.slots else '(it keeps no cache)'}"
    trace = functools.partial(export_graph, torch, opset=opset, notes=notes, what=what, extra=extra, model=model)

    def export(*args: Any, **kwargs: Any) -> Any:
        again = "torch.onnx.export" in request.phases.seconds  # the first step's own graph
        with request.phases.timed("torch.onnx.export (re-export)" if again else "torch.onnx.export"):
            return trace(*args, **kwargs)

    proto = export(
        step,
        sample,
        names,
        out_names,
        axes,
        hint="or export without the cache (a sample and task='feature-extraction')",
        fixed_hint=(
            f"{type(model).__name__} keeps no cache that transformers can hand over, and its forward() loops over "
            "the sequence in Python (a recurrent scan over its own state), so the exporter unrolls it to the "
            "sample's length: no graph can take prompts of any length. Export it at one fixed length instead, "
            "ob.export(model, sample, task='feature-extraction') with no dynamic_axes (logits for every position "
            "of inputs exactly the sample's shape), or generate with transformers"
            if layout.kind == "none"
            else ""
        ),
    )
    with request.phases.timed("first-step check"):
        differs = _hf_first_step.applies(layout) and _hf_first_step.prompt_differs(
            torch, step, proto, layout, position_ids
        )
    if differs:
        proto = _with_first_step(torch, step, proto, layout, position_ids, export, axes)
        notes.append(_hf_first_step.NOTE)
    feeds = {name: to_numpy(t) for name, t in zip(names, sample, strict=True)}

    def reference(inputs: Feeds) -> Feeds:
        tensors = [torch.from_numpy(np.array(inputs[name])) for name in names]  # a writable copy
        with inference(step):
            outputs = step(*tensors)
        return {name: to_numpy(t) for name, t in zip(out_names, outputs, strict=True)}

    with request.phases.timed("greedy tokens from the source"):
        spec = generation_spec(torch, model, request.sample)
    if layout.window is not None:
        spec.max_length = layout.window
        notes.append(
            f"sliding-window attention (window {layout.window}): the graph keeps the whole past, which matches the "
            f"model up to {layout.window} tokens; generate() refuses longer sequences"
        )
    notes.append(_cache_note(layout, joined=_hf_first_step.NOTE in notes))
    exported = Exported(
        model=proto,
        framework="transformers",
        framework_version=transformers.__version__,
        exporter="torch.onnx (dynamo)",
        dynamic_axes=axes,
        sample=feeds,
        reference=reference,
        reference_outputs=reference(feeds),
        notes=notes,
        properties={"task": "text-generation"},
        generation=spec,
    )
    attention_only = bool(layout.slots) and all(slot.part in ("key", "value") for slot in layout.slots)
    if request.options.get("fused", True) and attention_only and _hf_first_step.NOTE not in notes:
        positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        standard = dataclasses.replace(exported, notes=list(notes))
        fused_notes = list(notes)
        with request.phases.timed("fusion and its token check"):
            fused, fused_spec = _hf_fused.fuse(proto, spec, layout.layers, positions, fused_notes)
        if fused is proto:  # not fused: the note says why
            exported.notes = fused_notes
        else:
            exported = dataclasses.replace(
                exported, model=fused, generation=fused_spec, notes=fused_notes, fallback=standard
            )
    return exported


def _with_first_step(
    torch: Any,
    step: Any,
    proto: Any,
    layout: _hf_cache.CacheLayout,
    position_ids: bool,
    export: Any,
    axes: DynamicAxes,
) -> Any:
    """``proto`` joined with a graph traced on the prompt (an empty past), chosen by the past's length."""
    module, sample, names = _hf_first_step.first_step_graph(torch, step, layout, position_ids)
    outputs = ["logits", *layout.output_names()]
    first_axes: DynamicAxes = {name: {0: BATCH, 1: SEQUENCE} for name in names}
    growing = {f"present.{slot.suffix}": slot.axis for slot in layout.slots if slot.axis is not None}
    for name in outputs:
        first_axes[name] = {0: BATCH, growing[name]: SEQUENCE} if name in growing else {0: BATCH}
    first = export(module, sample, names, outputs, first_axes)
    past, axis = _hf_first_step.growing_input(layout)
    joined = first_step_branch(proto, first, past, axis)
    fixed = _graph.declare_axes(joined, axes)
    if fixed:
        raise ExportError("the joined first-step and step graphs fixed dynamic axes: " + "; ".join(fixed))
    return joined


def _cache_note(layout: _hf_cache.CacheLayout, *, joined: bool = False) -> str:
    if layout.kind == "none":
        return (
            "exported without a cache: the model keeps none (transformers' generate() recomputes the whole sequence "
            "each step too), so the graph takes the whole sequence and generate() feeds it again at every step "
            "(n new tokens cost O(n^2)); logits for the last position only"
        )
    kv = sum(slot.part == "key" for slot in layout.slots)
    states = {slot.layer for slot in layout.slots if not slot.grows}
    parts = []
    if kv:
        parts.append(
            f"{kv} attention layers as past_key_values.{{i}}.key/value inputs and present.{{i}}.key/value outputs"
        )
    if states:
        parts.append(
            f"{len(states)} state-space layers as past_key_values.{{i}}.conv/recurrent inputs and "
            "present.{i}.conv/recurrent outputs (fixed size, replaced each step)"
        )
    how = (
        "one token per step, transformers' recurrent form (generate() feeds the prompt token by token from zero "
        "states, which is what the full-sequence form computes)"
        if layout.recurrent
        else "one model for the first step (empty past) and later ones"
        + (" (two graphs inside it, chosen by the past's length)" if joined else "")
    )
    return f"exported with the cache: {'; '.join(parts)}; {how}; logits for the last position only"


def export_graph(
    torch: Any,
    module: Any,
    values: list[Any],
    names: list[str],
    outputs: list[str],
    axes: DynamicAxes,
    opset: int,
    notes: list[str],
    *,
    what: str,
    hint: str = "",
    extra: dict[str, Any] | None = None,
    model: Any = None,
    fixed_hint: str = "",
) -> Any:
    """One wrapper module through the dynamo exporter with transformers' patches; axes named and checked.

    Every dimension name becomes one ``torch.export.Dim``; past lengths may be 0, every other size
    is at least 1 (so the exporter can prove what holds for every real input: MPT's alibi slice).
    ``model`` (the transformers model the wrapper runs) has its mixture-of-experts layers exported
    on :func:`exportable_experts`.
    """
    dims = {
        dim: torch.export.Dim(re.sub(r"\W+", "_", dim), min=0 if dim.startswith("past_") else 1)
        for dim in sorted({d for name in names for d in axes[name].values()})
    }
    shapes = tuple({axis: dims[dim] for axis, dim in axes[name].items()} for name in names)
    try:
        experts = exportable_experts(model, notes) if model is not None else contextlib.nullcontext()
        with (
            inference(module),
            captured_warnings(notes, "dynamo"),
            exact_constant_rules(),
            transformers_patches(),
            experts,
        ):
            options = dict(extra or {})
            table = {**translations(), **transformers_translations(), **options.pop("custom_translation_table", {})}
            program = torch.onnx.export(
                module,
                tuple(values),
                dynamo=True,
                verbose=False,
                input_names=names,
                output_names=outputs,
                opset_version=opset,
                dynamic_shapes={"inputs": shapes},
                custom_translation_table=table or None,
                **options,
            )
            transformers_ir_fixes(program)
    except Exception as err:
        raise ExportError(
            f"Exporting {what} (opset {opset}) failed in torch.onnx's dynamo exporter: {summary(err)}. "
            f"Try another opset (opset=...){', ' + hint if hint else ''}."
        ) from err
    proto = program.model_proto
    fixed = _graph.declare_axes(proto, axes)
    if fixed:
        raise ExportError(
            f"the exporter fixed dynamic axes of {what}: "
            + "; ".join(fixed)
            + (f". {fixed_hint}." if fixed_hint else "")
        )
    return proto


def _sample(torch: Any, model: Any, layout: _hf_cache.CacheLayout, position_ids: bool, *, new: int) -> list[Any]:
    """Batch 2, ``new`` tokens after a past of 5: sizes distinct so the exporter cannot confuse them."""
    batch, past = 2, 5 if layout.slots else 0
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.get_text_config().vocab_size)
    width = past + new if layout.step_mask else new  # no past without a cache
    tensors = [
        torch.randint(0, vocab, (batch, new), generator=generator),
        torch.ones((batch, width), dtype=torch.long),
    ]
    if position_ids:
        tensors.append(torch.arange(past, past + new).expand(batch, new).contiguous())
    for slot in layout.slots:
        shape = tuple(past if slot.grows and axis == slot.axis else size for axis, size in enumerate(slot.shape, 1))
        tensors.append(torch.randn((batch, *shape), generator=generator).to(layout.dtype))
    return tensors


def _axes(inputs: list[str], outputs: list[str], layout: _hf_cache.CacheLayout) -> DynamicAxes:
    """Each input's and output's named axes (one new token per step for recurrent layouts)."""
    growing = {
        f"{prefix}.{slot.suffix}": slot.axis
        for slot in layout.slots
        if slot.axis is not None
        for prefix in ("past_key_values", "present")
    }
    axes: DynamicAxes = {}
    for name in inputs:
        if name in ("input_ids", "position_ids"):
            axes[name] = {0: BATCH} if layout.recurrent else {0: BATCH, 1: SEQUENCE}
        elif name == "attention_mask" and layout.kind == "none":
            axes[name] = {0: BATCH, 1: SEQUENCE}
        elif name == "attention_mask":
            axes[name] = {0: BATCH, 1: PAST_AND_ONE if layout.recurrent else TOTAL} if layout.step_mask else {0: BATCH}
        else:
            axes[name] = {0: BATCH, growing[name]: PAST} if name in growing else {0: BATCH}
    for name in outputs:
        axes[name] = {0: BATCH, growing[name]: TOTAL} if name in growing else {0: BATCH}
    return axes


def special_tokens(model: Any) -> tuple[tuple[int, ...], int | None]:
    """EOS ids and the pad id from the generation config (then the model config); pad falls back to EOS.

    Raises:
        ModelConfigError: An id lies outside the model's vocabulary (the model's own fault).
    """
    config, text = model.generation_config, model.config.get_text_config()
    eos = config.eos_token_id if config.eos_token_id is not None else getattr(text, "eos_token_id", None)
    eos_ids = () if eos is None else ((int(eos),) if isinstance(eos, int) else tuple(int(t) for t in eos))
    pad = config.pad_token_id if config.pad_token_id is not None else getattr(text, "pad_token_id", None)
    check_token_ids(model, {"eos_token_id": eos_ids, "pad_token_id": () if pad is None else (int(pad),)})
    return eos_ids, int(pad) if pad is not None else (eos_ids[0] if eos_ids else None)


def vocabulary_size(model: Any) -> int:
    """Rows of the output projection (what logits index), else the config's ``vocab_size``."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def check_token_ids(model: Any, ids: dict[str, tuple[int, ...]]) -> None:
    """Refuse token ids outside the vocabulary: the model's config is at fault, and generation would crash."""
    vocab = vocabulary_size(model)
    wrong = {name: [t for t in values if not 0 <= t < vocab] for name, values in ids.items()}
    wrong = {name: values for name, values in wrong.items() if values}
    if wrong:
        found = "; ".join(f"{name}={values if len(values) > 1 else values[0]}" for name, values in wrong.items())
        raise ModelConfigError(
            f"{type(model).__name__}'s configuration is inconsistent: {found} lies outside its vocabulary of {vocab} "
            f"tokens (ids 0..{vocab - 1}). This is the model's fault, not the export's: set "
            f"model.generation_config.<name> (and model.config.<name>) to an id below {vocab}, or None, then export."
        )


def recording_config(model: Any, eos: tuple[int, ...], pad: int | None, **extra: Any) -> tuple[Any, ModelSettings]:
    """The model's own generation config made greedy for :data:`RECORD_STEPS` steps, and the settings it holds.

    Settings onnxbridge's loop does not apply are reset in the copy, so the recorded tokens are
    what :meth:`Artifact.generate` must reproduce (it refuses those settings when asked to sample
    or search with them).
    """
    settings = ModelSettings.from_generation_config(model.generation_config)
    check_token_ids(
        model,
        {
            "forced_bos_token_id": () if settings.forced_bos_token_id is None else (settings.forced_bos_token_id,),
            "forced_eos_token_id": settings.forced_eos_token_id,
            "suppress_tokens": settings.suppress_tokens,
            "begin_suppress_tokens": settings.begin_suppress_tokens,
            "bad_words_ids": tuple(t for word in settings.bad_words_ids for t in word),
        },
    )
    config = copy.deepcopy(model.generation_config)
    for name in settings.unsupported:
        setattr(config, name, None)
    config.update(
        max_new_tokens=RECORD_STEPS,
        max_length=None,
        do_sample=False,
        num_beams=1,
        eos_token_id=list(eos) or None,
        pad_token_id=pad,
        output_logits=True,
        return_dict_in_generate=True,
        **extra,
    )
    return config, settings


@contextlib.contextmanager
def transformers_patches() -> Iterator[None]:
    """Transformers' own fixes for torch.export and torch.onnx while exporting, where it has them.

    ``transformers.exporters`` (transformers 5) registers reversible patches for tracing
    (``"dynamo"``: export-safe forms of data-dependent model code) and for the ONNX backend
    (``"onnx"``: complex ``unsqueeze``, ``split``, ...); both are installed only for the
    duration of the block, as transformers' own ONNX exporter installs them.
    """
    try:
        importlib.import_module("transformers.exporters.exporter_dynamo")  # registers the tracing patches
        importlib.import_module("transformers.exporters.exporter_onnx")  # registers the ONNX patches
        from transformers.exporters.utils import apply_patches
    except ImportError:
        yield
        return
    with apply_patches("dynamo"), apply_patches("onnx"), complex_unsqueeze():
        yield


def _transformers_onnx() -> Any:
    """Transformers' own ONNX exporter module (transformers 5), or ``None`` where it has none."""
    try:
        return importlib.import_module("transformers.exporters.exporter_onnx")
    except ImportError:
        return None


def transformers_translations() -> dict[Any, Any]:
    """Transformers' own ONNX translations for ops torchlib lacks or gets wrong, where it has them.

    transformers 5's ONNX exporter passes these to ``torch.onnx.export``: its grouped-experts
    matmul (``transformers.grouped_mm_fallback``), boolean ``masked_fill``, signed floor
    division of sizes, ``repeat_interleave`` and others.
    """
    return dict(getattr(_transformers_onnx(), "_ONNX_TRANSLATION_TABLE", {}))


def transformers_ir_fixes(program: Any) -> None:
    """Transformers' post-export fixes of the graph for onnxruntime (sorted ``TopK``, ...), where it has them."""
    fix = getattr(_transformers_onnx(), "apply_onnx_ir_fixes", None)
    if fix is not None:
        fix(program)


def generation_spec(torch: Any, model: Any, sample: Any) -> GenerationSpec:
    """The model's special tokens and its greedy tokens on fixed prompts (the user's, or made up)."""
    eos_ids, pad = special_tokens(model)
    input_ids, attention_mask = _prompts(model, sample, set(eos_ids) | {pad} - {None}, pad or 0)
    plain, settings = recording_config(model, eos_ids, pad)
    with inference(model):
        out = model.generate(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            generation_config=plain,
        )
    record = GreedyRecord(
        input_ids, attention_mask, to_numpy(out.sequences).astype(np.int64), [to_numpy(s) for s in out.logits]
    )
    return GenerationSpec("text-generation", eos_ids, pad, record, settings=settings)


def _prompts(model: Any, sample: Any, special: set[Any], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's prompts (a sample with input_ids), or three made-up ones of 2, 5 and 9 tokens, left-padded."""
    if sample is not None:
        if not (isinstance(sample, dict) and "input_ids" in sample):
            raise InputError(
                "For task='text-generation' the sample is optional; when given it must be a dict with 'input_ids' "
                "(and 'attention_mask' for padded prompts), used as the prompts that validation generates from."
            )
        ids = np.asarray(
            to_numpy(sample["input_ids"]) if hasattr(sample["input_ids"], "detach") else sample["input_ids"]
        )
        mask = sample.get("attention_mask")
        mask_array = (
            np.ones_like(ids) if mask is None else np.asarray(to_numpy(mask) if hasattr(mask, "detach") else mask)
        )
        return ids.astype(np.int64), mask_array.astype(np.int64)
    vocab = int(model.config.get_text_config().vocab_size)
    allowed = np.array([t for t in range(min(vocab, 1 << 16)) if t not in special], dtype=np.int64)
    rng = np.random.default_rng(0)
    lengths = (2, 5, 9)  # a very short prompt beside longer ones: padding is where exports go wrong
    ids = np.full((len(lengths), max(lengths)), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, -length:] = rng.choice(allowed, size=length)
        mask[row, -length:] = 1
    return ids, mask
