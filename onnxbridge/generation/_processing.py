"""The model's generation settings applied to one step's logits, as ``transformers``' logits processors do.

numpy versions of the processors ``transformers.GenerationMixin._get_logits_processor`` builds
from a ``GenerationConfig``, in its order, so that :meth:`Artifact.generate` runs without torch
and still picks the tokens ``model.generate()`` picks. Only the processors for the settings in
:class:`~onnxbridge.generation._spec.ModelSettings` are here; the rest are refused by
:func:`onnxbridge.generation._decoding.settings` before a step runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onnxbridge.generation._spec import ModelSettings

__all__ = ["Context", "process"]


@dataclass(frozen=True)
class Context:
    """What the processors need besides the logits: where the prompt ends and the sequence stops."""

    prompt_length: int  # length of the (padded) prompt, as transformers' input_ids_seq_length
    max_length: int  # prompt_length + max_new_tokens
    padding: np.ndarray | None  # left padding per row (ignored by the repetition penalty); None: no padding
    eos: tuple[int, ...]
    encoder_ids: np.ndarray | None = None  # the encoder's input ids; a decoder-only model's prompt


def process(scores: np.ndarray, sequences: np.ndarray, rules: ModelSettings, context: Context) -> np.ndarray:
    """The logits of the next token after ``sequences`` ``(batch, length)``, with the model's settings applied."""
    if rules.applies_nothing and scores.dtype == np.float32:
        return scores  # no rule to apply: no copy of the vocabulary-wide row
    scores = np.array(scores, dtype=np.float32)  # transformers casts the step's logits to float32, then processes
    length, vocab = sequences.shape[1], scores.shape[-1]
    encoder = context.encoder_ids
    if rules.encoder_repetition_penalty and encoder is not None:
        seen = np.take_along_axis(scores, encoder, axis=1)  # transformers divides by 1 / penalty
        boosted = np.where(seen < 0, seen / rules.encoder_repetition_penalty, seen * rules.encoder_repetition_penalty)
        np.put_along_axis(scores, encoder, boosted.astype(np.float32), axis=1)
    if rules.repetition_penalty is not None and rules.repetition_penalty != 1:
        scores = _repetition_penalty(scores, sequences, rules.repetition_penalty, context.padding)
    if rules.no_repeat_ngram_size and length >= rules.no_repeat_ngram_size:
        scores = _no_repeat_ngram(scores, sequences, rules.no_repeat_ngram_size)
    if rules.encoder_no_repeat_ngram_size and encoder is not None:
        scores = _encoder_no_repeat_ngram(scores, sequences, encoder, rules.encoder_no_repeat_ngram_size)
    if rules.bad_words_ids:
        scores = _bad_words(scores, sequences, rules.bad_words_ids, context.eos)
    eos = [t for t in context.eos if t < vocab]
    if eos and rules.min_length and length < rules.min_length:
        scores[:, eos] = -np.inf
    if eos and rules.min_new_tokens and length - context.prompt_length < rules.min_new_tokens:
        scores[:, eos] = -np.inf
    if rules.forced_bos_token_id is not None and length == 1:
        scores[:] = -np.inf
        scores[:, rules.forced_bos_token_id] = 0
    if rules.forced_eos_token_id and length == context.max_length - 1:
        scores[:] = -np.inf
        scores[:, list(rules.forced_eos_token_id)] = 0
    if rules.suppress_tokens:
        scores[:, [t for t in rules.suppress_tokens if t < vocab]] = -np.inf
    if rules.begin_suppress_tokens:
        begin = context.prompt_length
        if context.prompt_length == 1 and rules.forced_bos_token_id is not None:
            begin += 1  # the forced BOS comes first; suppression applies to the token after it
        if length == begin:
            scores[:, [t for t in rules.begin_suppress_tokens if t < vocab]] = -np.inf
    return scores


def _repetition_penalty(
    scores: np.ndarray, sequences: np.ndarray, penalty: float, padding: np.ndarray | None
) -> np.ndarray:
    """Tokens already in a row (its left padding excluded): positive logits divided, negative multiplied."""
    vocab = scores.shape[-1]
    ids = np.minimum(sequences, vocab)  # ids past the output vocabulary go to a spare column, dropped after
    if padding is not None:
        ids = np.where(np.arange(ids.shape[1])[None, :] < padding[:, None], vocab, ids)
    padded = np.pad(scores, ((0, 0), (0, 1)))
    seen = np.take_along_axis(padded, ids, axis=1)
    np.put_along_axis(padded, ids, np.where(seen < 0, seen * penalty, seen / penalty), axis=1)
    return padded[:, :vocab]


def _no_repeat_ngram(scores: np.ndarray, sequences: np.ndarray, size: int) -> np.ndarray:
    """Ban every token that would complete an n-gram already in the row."""
    vocab = scores.shape[-1]
    windows = sliding_window_view(sequences, size, axis=1)  # (batch, windows, size)
    prefix = sequences[:, sequences.shape[1] + 1 - size :]
    matches = (windows[..., :-1] == prefix[:, None, :]).all(axis=-1)
    rows, which = np.nonzero(matches)
    banned = windows[rows, which, -1]
    keep = banned < vocab
    scores[rows[keep], banned[keep]] = -np.inf
    return scores


def _encoder_no_repeat_ngram(scores: np.ndarray, sequences: np.ndarray, encoder: np.ndarray, size: int) -> np.ndarray:
    """Ban every token that would complete an n-gram of the row's encoder ids (transformers' slicing kept)."""
    length = sequences.shape[1]
    for row in range(scores.shape[0]):
        tokens = encoder[row].tolist()
        prefix = tuple(sequences[row].tolist()[length + 1 - size : length])  # negative starts slice as Python does
        banned = {gram[-1] for gram in zip(*(tokens[i:] for i in range(size)), strict=False) if gram[:-1] == prefix}
        scores[row, [t for t in banned if t < scores.shape[-1]]] = -np.inf
    return scores


def _bad_words(
    scores: np.ndarray, sequences: np.ndarray, words: tuple[tuple[int, ...], ...], eos: tuple[int, ...]
) -> np.ndarray:
    """Ban a bad word's last token where the row ends with the rest of it (one-token words always; EOS never)."""
    for word in words:
        if len(word) == 1 and word[0] in eos:
            continue  # transformers leaves EOS out of the bad words, so a sequence can always end
        prefix = np.asarray(word[:-1], dtype=sequences.dtype)
        if len(prefix) > sequences.shape[1]:
            continue
        rows = (sequences[:, sequences.shape[1] - len(prefix) :] == prefix).all(axis=1) if len(prefix) else slice(None)
        scores[rows, word[-1]] = -np.inf
    return scores
