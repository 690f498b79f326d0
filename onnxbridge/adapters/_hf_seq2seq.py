"""Encoder-decoder models (BART, T5, Whisper, ...) exported as two graphs: an encoder and a decoder with its cache.

* The **encoder** graph runs once per input. Besides ``encoder_hidden_states`` it returns the
  decoder's cross-attention keys and values (``present.{i}.encoder.key/value``): they depend on
  the encoder output only, so computing them once saves every decoder step the work. They come
  from the model's own code: the wrapper runs the decoder for one start token with an empty
  ``EncoderDecoderCache`` and returns the cross-attention cache it filled.
* The **decoder** graph runs every step, the first one included (empty self-attention past):
  ``decoder_input_ids``, ``encoder_attention_mask`` (text models), ``encoder_hidden_states``,
  ``past_key_values.{i}.decoder.key/value`` and ``past_key_values.{i}.encoder.key/value`` in;
  ``logits`` (last position) and ``present.{i}.decoder.key/value`` out. It rebuilds the model's
  ``EncoderDecoderCache`` from the flat tensors, with the cross-attention part marked as
  computed, and runs the model unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from onnxbridge.adapters._hf_cache import cache_keyword, returned_cache
from onnxbridge.adapters._hf_decoder import BATCH, export_graph, recording_config, special_tokens
from onnxbridge.adapters.pytorch import choose_opset, inference, to_numpy
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import ExportError, InputError, ModelConfigError
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest
from onnxbridge.generation._spec import GenerationSpec, GreedyRecord

ENCODER_SEQUENCE = "encoder_sequence_length"
DECODER_SEQUENCE = "decoder_sequence_length"
PAST_DECODER = "past_decoder_sequence_length"
TOTAL_DECODER = f"{PAST_DECODER} + {DECODER_SEQUENCE}"


def _names(layers: int, role: str) -> list[str]:
    prefix = "past_key_values" if role == "in" else "present"
    return [
        f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for part in ("decoder", "encoder") for kv in ("key", "value")
    ]


def export_seq2seq(model: Any, request: ExportRequest, task: str, notes: list[str]) -> Exported:
    """Export ``model`` as an encoder graph and a decoder graph, and record greedy tokens to validate them."""
    torch = require("torch", purpose="Exporting a transformers model")
    transformers = require("transformers", purpose="Exporting a transformers model", extra="transformers")
    config = model.config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = model.generation_config.decoder_start_token_id
    if start is None:
        raise ExportError(f"{type(model).__name__} has no decoder_start_token_id in its config; set one to export it.")
    _check_paired_decoder(model)
    encoder_inputs, text = _encoder_sample(torch, model, request.sample)
    layers = int(getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or 0)
    if not layers:  # a nested decoder config (T5Gemma)
        layers = int(getattr(config.get_text_config(decoder=True), "num_hidden_layers", 0) or 0)
    encoder, decoder = _wrappers(torch, transformers, model, int(start), layers, text)
    with inference(encoder):
        encoded = encoder(*encoder_inputs.values())
    if len(encoded) != 1 + 2 * layers:
        raise ExportError(
            f"{type(model).__name__}'s cross-attention cache has {(len(encoded) - 1) // 2} layers, not the {layers} "
            "decoder layers its config names; onnxbridge cannot lay out its cache."
        )
    hidden, cross = encoded[0], encoded[1:]
    opset = choose_opset(request.opset)
    enc_names = list(encoder_inputs)
    enc_out = ["encoder_hidden_states", *(n for n in _names(layers, "out") if ".encoder." in n)]
    enc_axes: DynamicAxes = {name: {0: BATCH, 1: ENCODER_SEQUENCE} if text else {0: BATCH} for name in enc_names}
    for name in enc_out:
        enc_axes[name] = (
            {0: BATCH, (1 if name == "encoder_hidden_states" else 2): ENCODER_SEQUENCE} if text else {0: BATCH}
        )
    batch, steps, past_length = 2, 3, 4
    generator = torch.Generator().manual_seed(0)
    vocab = int(config.get_text_config().vocab_size)
    dec_values: dict[str, Any] = {"decoder_input_ids": torch.randint(0, vocab, (batch, steps), generator=generator)}
    if text:
        dec_values["encoder_attention_mask"] = encoder_inputs["attention_mask"]
    dec_values["encoder_hidden_states"] = hidden
    for i in range(layers):
        key, value = cross[2 * i], cross[2 * i + 1]
        shape = (batch, key.shape[1], past_length, key.shape[3])
        dec_values[f"past_key_values.{i}.decoder.key"] = torch.randn(shape, generator=generator).to(key.dtype)
        dec_values[f"past_key_values.{i}.decoder.value"] = torch.randn(shape, generator=generator).to(value.dtype)
        dec_values[f"past_key_values.{i}.encoder.key"] = key
        dec_values[f"past_key_values.{i}.encoder.value"] = value
    dec_names = list(dec_values)
    dec_out = ["logits", *(n for n in _names(layers, "out") if ".decoder." in n)]
    dec_axes = _decoder_axes(dec_names, dec_out, text)
    kind = type(model).__name__
    enc_values, dec_list = list(encoder_inputs.values()), [dec_values[n] for n in dec_names]
    enc_proto = export_graph(
        torch, encoder, enc_values, enc_names, enc_out, enc_axes, opset, notes, what=f"{kind}'s encoder", model=model
    )
    dec_proto = export_graph(
        torch, decoder, dec_list, dec_names, dec_out, dec_axes, opset, notes, what=f"{kind}'s decoder", model=model
    )
    components = {
        "encoder": _exported(torch, transformers, encoder, enc_proto, encoder_inputs, enc_names, enc_out, enc_axes),
        "decoder": _exported(torch, transformers, decoder, dec_proto, dec_values, dec_names, dec_out, dec_axes),
    }
    spec = _generation_spec(model, encoder_inputs, int(start), task)
    notes.append(
        f"exported as two graphs: an encoder (returning the {layers} layers' cross-attention keys and values once) "
        "and a decoder with its self-attention cache, one graph for the first step (empty past) and later ones"
    )
    for part in components.values():
        part.properties = {"task": task}
    decoder_part = components["decoder"]
    return Exported(
        model=decoder_part.model,
        framework="transformers",
        framework_version=transformers.__version__,
        exporter="torch.onnx (dynamo)",
        dynamic_axes=decoder_part.dynamic_axes,
        notes=notes,
        properties={"task": task},
        generation=spec,
        components=components,
    )


def _check_paired_decoder(model: Any) -> None:
    """Refuse an encoder-decoder pair (``EncoderDecoderModel``) whose decoder cannot attend to the encoder."""
    decoder = getattr(model.config, "decoder", None)
    if decoder is None or not hasattr(decoder, "add_cross_attention"):
        return
    wrong = [f"{name}=False" for name in ("is_decoder", "add_cross_attention") if not getattr(decoder, name, False)]
    if wrong:
        raise ModelConfigError(
            f"{type(model).__name__}'s decoder config has {' and '.join(wrong)}: its decoder "
            f"{'attends both ways and ' if 'is_decoder=False' in wrong else ''}ignores the encoder, so the pair "
            "cannot generate from its input. This is the model's configuration, not the export: build it as "
            "EncoderDecoderModel.from_encoder_decoder_pretrained(...) or EncoderDecoderConfig."
            "from_encoder_decoder_configs(encoder, decoder) do (they set is_decoder=True and "
            "add_cross_attention=True), then export."
        )


def _encoder_sample(torch: Any, model: Any, sample: Any) -> tuple[dict[str, Any], bool]:
    """The encoder's inputs (the user's sample, or made up) and whether the model reads text."""
    main = getattr(model, "main_input_name", "input_ids")
    config = model.config
    generator = torch.Generator().manual_seed(0)
    if sample is not None:
        if not isinstance(sample, dict) or main not in sample:
            raise InputError(
                f"For an encoder-decoder export the sample is optional; when given it must be a dict with {main!r} "
                "(and 'attention_mask' for padded text): the encoder's inputs."
            )
        values = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v)) for k, v in sample.items()}
        if main == "input_ids" and "attention_mask" not in values:
            values["attention_mask"] = torch.ones_like(values["input_ids"])
        return {k: values[k] for k in (main, "attention_mask") if k in values}, main == "input_ids"
    if main == "input_ids":
        vocab = int(config.get_text_config().vocab_size)
        ids = torch.randint(0, vocab, (2, 7), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, True
    if main == "input_features":
        frames = 2 * int(getattr(config, "max_source_positions", 0))  # Whisper: two convolutions, the second strided
        bins = int(getattr(config, "num_mel_bins", 0))
        if not frames or not bins:
            raise InputError(f"onnxbridge cannot size {type(model).__name__}'s input_features; pass a sample.")
        return {"input_features": torch.randn((2, bins, frames), generator=generator)}, False
    raise InputError(f"onnxbridge cannot build encoder inputs for {type(model).__name__} ({main!r}); pass a sample.")


def _wrappers(torch: Any, transformers: Any, model: Any, start: int, layers: int, text: bool) -> tuple[Any, Any]:
    takes_mask = "attention_mask" in inspect.signature(model.forward).parameters and text
    keyword = cache_keyword(model)
    # The encoder's own output class (NLLB-MoE's and Switch's carry router logits the model reads),
    # learnt when the encoder wrapper first runs; the decoder hands the hidden states back in it.
    found: dict[str, Any] = {"output": transformers.modeling_outputs.BaseModelOutput}

    def encoder_output(hidden: Any) -> Any:
        return found["output"](last_hidden_state=hidden)

    def cache(self_pairs: list[tuple[Any, Any]], cross_pairs: list[tuple[Any, Any]]) -> Any:
        own, cross = transformers.DynamicCache(), transformers.DynamicCache()
        for i, (key, value) in enumerate(self_pairs):
            own.update(key, value, i)
        for i, (key, value) in enumerate(cross_pairs):
            cross.update(key, value, i)
        return transformers.EncoderDecoderCache(own, cross)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            main, mask = inputs[0], (inputs[1] if len(inputs) > 1 else None)
            kwargs = {model.main_input_name: main, **({"attention_mask": mask} if mask is not None else {})}
            encoded = self.model.get_encoder()(**kwargs)
            hidden = encoded[0] if isinstance(encoded, tuple) else encoded.last_hidden_state  # return_dict=False
            if isinstance(encoded, transformers.utils.ModelOutput):
                found["output"] = type(encoded)
            first = torch.full((main.shape[0], 1), start, dtype=torch.long)
            out = self.model(
                encoder_outputs=encoder_output(hidden),
                decoder_input_ids=first,
                use_cache=True,
                **{keyword: cache([], [])},
                **({"attention_mask": mask} if takes_mask and mask is not None else {}),
            )
            layers_ = returned_cache(out).cross_attention_cache.layers
            return (hidden, *(t for layer in layers_ for t in (layer.keys, layer.values)))

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            ids = inputs[0]
            mask, hidden, past = (inputs[1], inputs[2], inputs[3:]) if text else (None, inputs[1], inputs[2:])
            own = [(past[4 * i], past[4 * i + 1]) for i in range(layers)]
            cross = [(past[4 * i + 2], past[4 * i + 3]) for i in range(layers)]
            out = self.model(
                encoder_outputs=encoder_output(hidden),
                decoder_input_ids=ids,
                use_cache=True,
                **{keyword: cache(own, cross)},
                **({"attention_mask": mask} if takes_mask and mask is not None else {}),
            )
            present = returned_cache(out).self_attention_cache.layers
            return (out.logits[:, -1:], *(t for layer in present for t in (layer.keys, layer.values)))

    return Encoder(), Decoder()


def _decoder_axes(inputs: list[str], outputs: list[str], text: bool) -> DynamicAxes:
    encoder = {1: ENCODER_SEQUENCE} if text else {}
    axes: DynamicAxes = {}
    for name in inputs:
        if name == "decoder_input_ids":
            axes[name] = {0: BATCH, 1: DECODER_SEQUENCE}
        elif name in ("encoder_attention_mask", "encoder_hidden_states"):
            axes[name] = {0: BATCH, **encoder}
        elif ".decoder." in name:
            axes[name] = {0: BATCH, 2: PAST_DECODER}
        else:
            axes[name] = {0: BATCH, **({2: ENCODER_SEQUENCE} if text else {})}
    for name in outputs:
        axes[name] = {0: BATCH} if name == "logits" else {0: BATCH, 2: TOTAL_DECODER}
    return axes


def _exported(
    torch: Any,
    transformers: Any,
    module: Any,
    proto: Any,
    values: dict[str, Any],
    names: list[str],
    outputs: list[str],
    axes: DynamicAxes,
) -> Exported:
    def reference(inputs: Feeds) -> Feeds:
        tensors = [torch.from_numpy(np.array(inputs[name])) for name in names]
        with inference(module):
            result = module(*tensors)
        return {name: to_numpy(t) for name, t in zip(outputs, result, strict=True)}

    feeds = {name: to_numpy(values[name]) for name in names}
    return Exported(
        model=proto,
        framework="transformers",
        framework_version=transformers.__version__,
        exporter="torch.onnx (dynamo)",
        dynamic_axes={k: v for k, v in axes.items() if k in names or k in outputs},
        sample=feeds,
        reference=reference,
        reference_outputs=reference(feeds),
    )


def _generation_spec(model: Any, encoder_inputs: dict[str, Any], start: int, task: str) -> GenerationSpec:
    """Special tokens, and the source's greedy tokens for the sample's encoder inputs."""
    eos, pad = special_tokens(model)
    plain, settings = recording_config(model, eos, pad, decoder_start_token_id=start)
    with inference(model):
        out = model.generate(**encoder_inputs, generation_config=plain)
    tokens = to_numpy(out.sequences).astype(np.int64)
    batch = tokens.shape[0]
    if tokens.shape[1] == 0 or (tokens[:, 0] != start).any():  # Whisper returns the new tokens only
        tokens = np.concatenate([np.full((batch, 1), start, dtype=np.int64), tokens], axis=1)
    first = np.full((batch, 1), start, dtype=np.int64)
    record = GreedyRecord(
        first,
        np.ones_like(first),
        tokens,
        [to_numpy(s) for s in out.logits],
        encoder_inputs={name: to_numpy(value) for name, value in encoder_inputs.items()},
    )
    return GenerationSpec(
        task,
        eos,
        pad,
        record,
        decoder_start_token_id=start,
        settings=settings,
    )
