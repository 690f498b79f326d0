"""Folders that LLM runtimes load as they are: onnxruntime-genai, transformers.js, Optimum.

Each layout is the graph under the name that runtime looks for, beside every settings file it
reads:

* ``"genai"`` (onnxruntime-genai's ``og.Model(folder)``): ``model.onnx`` and ``genai_config.json``,
  written from the graph itself (layers, KV heads and head size from the cache inputs' shapes,
  ``position_ids`` when the graph takes it) and the model's generation settings (special tokens,
  search defaults). ``past_present_share_buffer`` is true only for a graph whose every attention
  is ``GroupQueryAttention``, which writes the present into the past's buffer; a graph that
  grows its cache by ``Concat`` must say false (with true, genai allocates the present at full
  length and the ``Concat`` fails).
* ``"transformers.js"`` (``from_pretrained(id, {dtype})`` with ``env.localModelPath``):
  ``config.json``, ``generation_config.json`` and ``onnx/model<suffix>.onnx``, the suffix naming
  the precision as transformers.js does (``""`` fp32, ``_fp16``, ``_quantized`` for 8-bit,
  ``_q4``, ``_q4f16``), so quantized variants saved into one folder sit side by side.
* ``"optimum"`` (``ORTModelFor*.from_pretrained(folder)``): ``model.onnx``, ``config.json`` and
  ``generation_config.json``.

Tokenizer files are copied from the folder the model was loaded from, or written by the
``tokenizer`` given. Files are staged in a temporary folder inside the target and moved into
place only when all are written, so a failed save leaves no partial file behind.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.core._errors import InputError, ModelFileError, UnsupportedSettingError
from onnxbridge.graph import _files, _graph, _partials

if TYPE_CHECKING:
    import onnx

    from onnxbridge.core._types import SourceFiles
    from onnxbridge.generation._spec import GenerationSpec

LAYOUTS = ("genai", "transformers.js", "optimum")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_GENAI_TYPES = {  # decoder types onnxruntime-genai 0.18 knows by name; others run as its generic "decoder"
    "chatglm",
    "ernie4_5",
    "gemma",
    "gpt2",
    "gptoss",
    "granite",
    "llama",
    "mistral",
    "nemotron",
    "olmo",
    "phi3",
    "qwen2",
    "qwen3",
    "smollm3",
}
_EIGHT_BIT = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "ConvInteger", "QGemm"}


def check_layout(layout: str | None, tokenizer: Any = None) -> None:
    """:class:`InputError` listing the layouts unless ``layout`` is one of them (or ``None``: a file)."""
    if layout is None and tokenizer is not None:
        raise InputError("tokenizer= goes with layout=...: a single .onnx file has no place for it.")
    if layout is not None and layout not in LAYOUTS:
        raise InputError(
            f"layout={layout!r} is not a folder layout onnxbridge writes. Use one of {', '.join(map(repr, LAYOUTS))}, "
            "or no layout for a single .onnx file."
        )


def write(
    folder: str | os.PathLike[str],
    layout: str,
    model: onnx.ModelProto,
    *,
    generation: GenerationSpec | None,
    source: SourceFiles | None,
    tokenizer: Any = None,
    external_data: bool | None = None,
) -> Path:
    """Write ``model`` and the files ``layout``'s runtime reads into ``folder`` (created if missing)."""
    check_layout(layout)
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ModelFileError(f"layout={layout!r} writes a folder, but {str(target)!r} is a file. Give a folder path.")
    if not target.parent.is_dir():
        raise ModelFileError(f"Cannot create {str(target)!r}: its parent folder does not exist. Create it first.")
    configs = dict(source.configs) if source is not None else {}
    genai = genai_config(model, generation, configs) if layout == "genai" else None  # refuse before writing
    refused = refusal(layout, model)
    if refused:
        raise UnsupportedSettingError(
            f"layout={layout!r}: {refused} (a decoder fused for onnxruntime 1.32). Save the graph in standard "
            "operators: art.fallback of a fused export, ob.export(model, fused=False), or the artifact before "
            "optimize()."
        )
    if layout != "genai" and "config.json" not in configs:
        raise UnsupportedSettingError(
            f"layout={layout!r} needs the model's config.json, which only a transformers export records; this "
            "artifact has none. Export the transformers model with onnxbridge (or save a plain .onnx file)."
        )
    target.mkdir(exist_ok=True)
    _partials.remove_orphans(target)
    try:
        with _partials.partial_folder(target) as staging:
            name = graph_name(layout, model)
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            data_name = Path(name).name + ("_data" if layout == "transformers.js" else ".data")
            if external_data is None and layout == "genai":
                external_data = True  # as genai's builder writes it: onnxruntime maps the weights from the file
            _files.save_model(model, staging / name, external_data=external_data, data_name=data_name)
            files = {name: "graph"}
            if (staging / name).parent.joinpath(data_name).exists():
                files[str(Path(name).parent / data_name)] = "weights"
            texts: dict[str, Mapping[str, Any]] = {} if genai is None else {"genai_config.json": genai}
            if layout != "genai":
                texts.update(configs)
            if layout == "transformers.js":
                chunks = 1 if "weights" in files.values() else 0
                texts["config.json"] = _external_data_format(configs["config.json"], target, Path(name).name, chunks)
            for file_name, data in texts.items():
                (staging / file_name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
                files[file_name] = "settings"
            files.update(dict.fromkeys(_tokenizer_files(staging, tokenizer, source), "tokenizer"))
            for relative in files:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / relative, target / relative)
    except OSError as err:
        raise ModelFileError(
            f"Cannot write the {layout} folder {str(target)!r}: {err.strerror or err}. Check that it is writable and "
            "has free space; no partial file was left there."
        ) from err
    if "tokenizer" not in files.values():
        warnings.warn(
            f"No tokenizer files were written into {str(target)!r}: the model was not loaded from a local folder "
            "that has them. Pass tokenizer=AutoTokenizer.from_pretrained(...) to save() to include them; "
            f"{layout}'s runtime needs them to take text (token ids work without).",
            UserWarning,
            stacklevel=3,
        )
    return target


def _external_data_format(config: Mapping[str, Any], target: Path, graph: str, chunks: int) -> dict[str, Any]:
    """``config`` with transformers.js's record of which graphs keep weights in ``<graph>_data``.

    transformers.js loads external data only for files listed in
    ``transformers.js_config.use_external_data_format``; the entries of variants already in the
    folder are kept.
    """
    existing: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        existing = json.loads((target / "config.json").read_text(encoding="utf-8"))
    settings = dict(existing.get("transformers.js_config") or {}) | dict(config.get("transformers.js_config") or {})
    formats = settings.get("use_external_data_format")
    formats = dict(formats) if isinstance(formats, dict) else {}
    formats.pop(graph, None)
    if chunks:
        formats[graph] = chunks
    result = dict(config)
    if formats:
        settings["use_external_data_format"] = formats
    else:
        settings.pop("use_external_data_format", None)
    if settings:
        result["transformers.js_config"] = settings
    return result


TRANSFORMERS_JS_ONNXRUNTIME = "1.30"  # the onnxruntime-node transformers.js 4.3 pins


def refusal(layout: str, model: onnx.ModelProto) -> str:
    """Why ``layout``'s runtime would refuse ``model``'s graph, or ``""``.

    transformers.js runs onnxruntime-node 1.30, whose contrib operators take fewer inputs than a
    decoder fused for onnxruntime 1.32 gives ``GroupQueryAttention``.
    """
    from onnxbridge.checks import _compat

    problem = _compat.graph_inputs_problem(model, TRANSFORMERS_JS_ONNXRUNTIME) if layout == "transformers.js" else ""
    return f"transformers.js runs onnxruntime {TRANSFORMERS_JS_ONNXRUNTIME}, and {problem}" if problem else ""


def graph_name(layout: str, model: onnx.ModelProto) -> str:
    """Where the graph goes inside the folder."""
    if layout == "transformers.js":
        return f"onnx/model{precision_suffix(model)}.onnx"
    return "model.onnx"


def precision_suffix(model: onnx.ModelProto) -> str:
    """transformers.js's file suffix for the graph's precision (its ``dtype`` option picks the file)."""
    import onnx

    nodes = list(_graph.all_nodes(model.graph))
    bits = {a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
    logits = model.graph.output[0].type.tensor_type.elem_type if model.graph.output else onnx.TensorProto.FLOAT
    half = logits == onnx.TensorProto.FLOAT16
    if 4 in bits:
        return "_q4f16" if half else "_q4"
    if bits or any(n.op_type in _EIGHT_BIT for n in nodes) or _int8_weights(model):
        return "_quantized"
    return "_fp16" if half else ""


def _int8_weights(model: onnx.ModelProto) -> bool:
    import onnx

    eight = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return any(t.data_type in eight and len(t.dims) >= 2 for t in model.graph.initializer)


def genai_config(
    model: onnx.ModelProto, generation: GenerationSpec | None, configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """onnxruntime-genai's ``genai_config.json`` for a decoder graph with an attention KV cache.

    Raises:
        UnsupportedSettingError: The graph is not one genai's decoder loop can drive (no cache,
            state-space states, other inputs), saying what it has.
    """
    names = [v.name for v in _graph.inputs(model)]
    outputs = {o.name for o in model.graph.output}
    layers = collections.defaultdict(set)
    for name in names:
        match = _PAST.match(name)
        if match:
            layers[int(match.group(1))].add(match.group(2))
    count = len(layers)
    others = [n for n in names if not _PAST.match(n) and n not in ("input_ids", "attention_mask", "position_ids")]
    missing = [f"present.{i}.{part}" for i in range(count) for part in ("key", "value")]
    missing = [n for n in [*missing, "logits"] if n not in outputs]
    complete = (
        count > 0 and sorted(layers) == list(range(count)) and all(v == {"key", "value"} for v in layers.values())
    )
    if generation is None or not complete or others or missing or "input_ids" not in names:
        what = (
            f"inputs {others}"
            if others
            else f"missing outputs {missing}"
            if missing
            else "no past_key_values.{i}.key/value inputs"
        )
        raise UnsupportedSettingError(
            "layout='genai' needs a decoder exported with task='text-generation' whose cache is attention keys and "
            "values only (past_key_values.{i}.key/value in, present.{i}.key/value out), as onnxruntime-genai's "
            f"decoder loop drives it; this graph has {what}. Save it as a plain .onnx file, or use "
            "layout='optimum' or 'transformers.js'."
        )
    shapes = {v.name: v.type.tensor_type.shape.dim for v in model.graph.input}
    past = shapes["past_key_values.0.key"]
    kv_heads, head_size = past[1].dim_value, past[3].dim_value
    config = dict(configs.get("config.json", {}))
    text = dict(config.get("text_config") or config)
    settings = dict(configs.get("generation_config.json", {}))
    heads = int(text.get("num_attention_heads") or kv_heads)
    context = generation.max_length or _first(text, "max_position_embeddings", "n_positions", "max_sequence_length")
    if not context:
        raise UnsupportedSettingError(
            "layout='genai' needs the model's context length (max_position_embeddings in config.json), which this "
            "artifact does not record. Export the transformers model with onnxbridge."
        )
    logits = model.graph.output[0].type.tensor_type.shape.dim
    vocab = logits[-1].dim_value or int(text.get("vocab_size", 0))
    eos = list(generation.eos_token_id)
    share = _graph.shares_cache_buffers(model)
    inputs: dict[str, str] = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if "position_ids" in names:
        inputs["position_ids"] = "position_ids"
    model_type = str(config.get("model_type", ""))
    return {
        "model": {
            "bos_token_id": _first(settings, "bos_token_id") or _first(text, "bos_token_id") or 0,
            "context_length": int(context),
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": head_size,
                "hidden_size": int(text.get("hidden_size") or heads * head_size),
                "inputs": {
                    **inputs,
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": heads,
                "num_hidden_layers": count,
                "num_key_value_heads": kv_heads,
            },
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": generation.pad_token_id if generation.pad_token_id is not None else (eos or [0])[0],
            "type": model_type if model_type in _GENAI_TYPES else "decoder",
            "vocab_size": vocab,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": bool(settings.get("do_sample", False)),
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": int(context),
            "min_length": int(settings.get("min_length", 0)),
            "no_repeat_ngram_size": int(settings.get("no_repeat_ngram_size", 0)),
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": share,
            "repetition_penalty": float(settings.get("repetition_penalty", 1.0)),
            "temperature": float(settings.get("temperature", 1.0)),
            "top_k": int(settings.get("top_k", 50)),
            "top_p": float(settings.get("top_p", 1.0)),
        },
    }


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def _tokenizer_files(staging: Path, tokenizer: Any, source: SourceFiles | None) -> list[str]:
    """Tokenizer files written into ``staging``: by ``tokenizer``, else copied from the model's folder."""
    if tokenizer is not None:
        if not hasattr(tokenizer, "save_pretrained"):
            raise InputError(
                f"tokenizer= takes a transformers tokenizer (with save_pretrained), not {type(tokenizer).__name__}."
            )
        written = Path(tempfile.mkdtemp(dir=staging))
        tokenizer.save_pretrained(str(written))
        names = [p.name for p in written.iterdir() if p.is_file()]
        for name in names:
            os.replace(written / name, staging / name)
        return names
    if source is None or source.folder is None or not Path(source.folder).is_dir():
        return []
    found = [name for name in TOKENIZER_FILES if (Path(source.folder) / name).is_file()]
    for name in found:
        shutil.copyfile(Path(source.folder) / name, staging / name)
    return found
