"""Text generation with models exported with their KV cache: settings, recorded tokens, the loop, the check.

A decoder exported with ``task="text-generation"`` is one graph for every step. It takes
``input_ids``, ``attention_mask`` (past and new tokens), ``position_ids`` when the model
uses them, and ``past_key_values.{i}.key/value``; it returns ``logits`` for the last
position and ``present.{i}.key/value``. The first step feeds an empty past (length 0),
each later step feeds the presents back. The cache stays in onnxruntime ``OrtValue``s
between steps; only the logits come back to numpy.

This is what ``transformers``' ``generate()`` does for greedy search and sampling with
temperature, top-k and top-p, with the model's own generation settings (repetition penalty,
no-repeat n-grams, bad words, minimum lengths, forced BOS/EOS, suppressed tokens) applied in
the same order, so greedy output is token for token the same. Settings it does not apply
(beam search, typical sampling, ...) are refused with a typed error. It is not a serving
system: no batching of requests that arrive at different times.

Encoder-decoder models run their encoder graph once, then the decoder graph step by step the
same way (:func:`generate_seq2seq`). The step machinery and token choice live in
:mod:`onnxbridge.generation._decoding`, the settings in :mod:`onnxbridge.generation._spec`, the
validation check in :mod:`onnxbridge.generation._check`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._errors import InputError
from onnxbridge.generation import _decoding
from onnxbridge.generation._decoding import Generated
from onnxbridge.generation._spec import DEFAULT_OPTIONS, GREEDY, GenerationOptions, GenerationSpec, GreedyRecord

if TYPE_CHECKING:
    from onnxbridge.running._session import Session

__all__ = ["generate", "generate_seq2seq", "replay"]


def generate(
    session: Session,
    spec: GenerationSpec,
    input_ids: Any,
    attention_mask: Any = None,
    options: GenerationOptions = DEFAULT_OPTIONS,
    *,
    keep_logits: bool = False,
) -> Generated:
    """The loop behind :meth:`Artifact.generate` for a decoder-only model; see there for the options."""
    decoder = _decoding.Decoder(session, shared=spec.shared_cache)
    ids = _decoding.token_matrix(input_ids, "input_ids")
    mask = np.ones_like(ids) if attention_mask is None else _decoding.checked_mask(attention_mask, ids.shape)
    chosen = _decoding.settings(spec, options)
    max_new_tokens = options.max_new_tokens
    if spec.max_length is not None and ids.shape[1] + max_new_tokens > spec.max_length:
        raise InputError(
            f"{ids.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed {spec.max_length}, the model's "
            "sliding attention window: past it the exported graph (which keeps the whole past) no longer computes "
            "what the model computes. Shorten the prompt or max_new_tokens."
        )
    decoder.begin(mask, capacity=ids.shape[1] + max_new_tokens)
    padding = np.argmax(mask != 0, axis=1)  # left padding per row, as transformers' repetition penalty skips it
    return _decoding.loop(decoder, ids, chosen, keep_logits, padding, encoder_ids=ids)


def replay(session: Session, spec: GenerationSpec) -> Callable[[GreedyRecord], Generated]:
    """What :func:`check_generation` runs for a decoder-only model: greedy from the recorded prompts."""

    def run(record: GreedyRecord) -> Generated:
        options = GREEDY.with_steps(record.steps)
        return generate(session, spec, record.input_ids, record.attention_mask, options, keep_logits=True)

    return run


def generate_seq2seq(
    encoder: Session,
    decoder: Session,
    spec: GenerationSpec,
    inputs: dict[str, np.ndarray],
    *,
    decoder_input_ids: Any = None,
    options: GenerationOptions = DEFAULT_OPTIONS,
    keep_logits: bool = False,
) -> Generated:
    """The loop behind :meth:`EncoderDecoderArtifact.generate`: encode once, then decode with the cache."""
    stepper = _decoding.Seq2SeqDecoder(encoder, decoder)
    chosen = _decoding.settings(spec, options)
    batch = stepper.begin(inputs)
    if decoder_input_ids is None:
        if spec.decoder_start_token_id is None:
            raise InputError("The model has no decoder_start_token_id; pass decoder_input_ids=[[...]].")
        prompt = np.full((batch, 1), spec.decoder_start_token_id, dtype=np.int64)
    else:
        prompt = _decoding.token_matrix(decoder_input_ids, "decoder_input_ids")
        if prompt.shape[0] == 1 and batch > 1:
            prompt = np.repeat(prompt, batch, axis=0)
        if prompt.shape[0] != batch:
            raise InputError(f"decoder_input_ids has {prompt.shape[0]} rows for a batch of {batch}.")
    ids = inputs.get("input_ids")  # text encoders: their input ids feed the encoder rules; speech has none
    encoder_ids = ids.astype(np.int64) if ids is not None and ids.ndim == 2 and ids.dtype.kind in "iu" else None
    return _decoding.loop(stepper, prompt, chosen, keep_logits, encoder_ids=encoder_ids)
