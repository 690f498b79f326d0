"""Text generation with models exported with their KV cache: settings, recorded tokens, the loop, the check.

A decoder exported with ``task="text-generation"`` is one graph for every step. It takes
``input_ids``, ``attention_mask`` (past and new tokens), ``position_ids`` when the model
uses them, and ``past_key_values.{i}.key/value``; it returns ``logits`` for the last
position and ``present.{i}.key/value``. The first step feeds an empty past (length 0),
each later step feeds the presents back. The cache stays in onnxruntime ``OrtValue``s
between steps; only the logits come back to numpy.

This is what ``transformers``' ``generate()`` does for greedy search and sampling with
temperature, top-k and top-p, in the same order, so greedy output is token for token the
same. It is not a serving system: no beam search, no repetition penalties, no batching
of requests that arrive at different times.

Encoder-decoder models run their encoder graph once, then the decoder graph step by step the
same way (:func:`generate_seq2seq`). The step machinery and token choice live in
:mod:`onnxbridge._decoding`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge import _decoding
from onnxbridge._decoding import Generated
from onnxbridge._errors import InputError, first_line
from onnxbridge._validation import Check

if TYPE_CHECKING:
    from onnxbridge._session import Session

__all__ = ["GenerationSpec", "Generated", "GreedyRecord", "generate", "check_generation"]

GENERATION = "generation"


@dataclass
class GreedyRecord:
    """Greedy tokens the source model generated for fixed prompts at export time.

    Attributes:
        input_ids: The prompts, left-padded, ``(batch, length)``.
        attention_mask: 1 for prompt tokens, 0 for padding.
        tokens: The full sequences the source returned (prompt and new tokens), as
            ``transformers``' ``generate()`` returns them.
        logits: The source's logits for the last position at each step, ``(batch, vocab)``;
            kept in memory, not in saved files.
        encoder_inputs: For encoder-decoder models, the encoder's inputs (``input_ids`` are
            then the decoder's first tokens).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: np.ndarray
    logits: list[np.ndarray] | None = None
    encoder_inputs: dict[str, np.ndarray] | None = None

    @property
    def steps(self) -> int:
        """How many new tokens were recorded."""
        return int(self.tokens.shape[1] - self.input_ids.shape[1])


@dataclass
class GenerationSpec:
    """What :meth:`Artifact.generate` needs beyond the graph.

    Attributes:
        task: ``"text-generation"``.
        eos_token_id: Tokens that end a sequence (the model's generation config).
        pad_token_id: Token written after a sequence ended, and used for left padding.
        record: The source model's greedy tokens on fixed prompts, for validation.
        max_length: Longest sequence (prompt and new tokens) the graph computes as the model
            does, for models with sliding-window attention; ``None``: no limit.
        decoder_start_token_id: For encoder-decoder models: the decoder's first token.
        suppress_tokens: Tokens never generated (the model's generation config).
        begin_suppress_tokens: Tokens not generated at the first step.
    """

    task: str
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None
    record: GreedyRecord | None = field(default=None, repr=False)
    max_length: int | None = None
    decoder_start_token_id: int | None = None
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form for a saved file's metadata (record logits left out)."""
        data: dict[str, Any] = {
            "task": self.task,
            "eos_token_id": list(self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "max_length": self.max_length,
            "decoder_start_token_id": self.decoder_start_token_id,
            "suppress_tokens": list(self.suppress_tokens),
            "begin_suppress_tokens": list(self.begin_suppress_tokens),
        }
        if self.record is not None:
            data["record"] = {
                "input_ids": self.record.input_ids.tolist(),
                "attention_mask": self.record.attention_mask.tolist(),
                "tokens": self.record.tokens.tolist(),
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationSpec:
        """The inverse of :meth:`to_json`."""
        record = data.get("record")
        return cls(
            task=str(data["task"]),
            eos_token_id=tuple(int(t) for t in data.get("eos_token_id", ())),
            pad_token_id=None if data.get("pad_token_id") is None else int(data["pad_token_id"]),
            max_length=None if data.get("max_length") is None else int(data["max_length"]),
            decoder_start_token_id=None
            if data.get("decoder_start_token_id") is None
            else int(data["decoder_start_token_id"]),
            suppress_tokens=tuple(int(t) for t in data.get("suppress_tokens", ())),
            begin_suppress_tokens=tuple(int(t) for t in data.get("begin_suppress_tokens", ())),
            record=None
            if record is None
            else GreedyRecord(
                np.asarray(record["input_ids"], dtype=np.int64),
                np.asarray(record["attention_mask"], dtype=np.int64),
                np.asarray(record["tokens"], dtype=np.int64),
            ),
        )


def generate(
    session: Session,
    spec: GenerationSpec,
    input_ids: Any,
    attention_mask: Any = None,
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    keep_logits: bool = False,
) -> Generated:
    """The loop behind :meth:`Artifact.generate` for a decoder-only model; see there for the arguments."""
    decoder = _decoding.Decoder(session)
    ids = _decoding.token_matrix(input_ids, "input_ids")
    mask = np.ones_like(ids) if attention_mask is None else _decoding.checked_mask(attention_mask, ids.shape)
    chosen = _decoding.settings(
        spec,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    if spec.max_length is not None and ids.shape[1] + max_new_tokens > spec.max_length:
        raise InputError(
            f"{ids.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed {spec.max_length}, the model's "
            "sliding attention window: past it the exported graph (which keeps the whole past) no longer computes "
            "what the model computes. Shorten the prompt or max_new_tokens."
        )
    decoder.begin(mask)
    return _decoding.loop(decoder, ids, chosen, keep_logits)


def replay(session: Session, spec: GenerationSpec) -> Callable[[GreedyRecord], Generated]:
    """What :func:`check_generation` runs for a decoder-only model: greedy from the recorded prompts."""

    def run(record: GreedyRecord) -> Generated:
        return generate(
            session, spec, record.input_ids, record.attention_mask, max_new_tokens=record.steps, keep_logits=True
        )

    return run


def generate_seq2seq(
    encoder: Session,
    decoder: Session,
    spec: GenerationSpec,
    inputs: dict[str, np.ndarray],
    *,
    decoder_input_ids: Any = None,
    keep_logits: bool = False,
    **options: Any,
) -> Generated:
    """The loop behind :meth:`EncoderDecoderArtifact.generate`: encode once, then decode with the cache."""
    stepper = _decoding.Seq2SeqDecoder(encoder, decoder)
    chosen = _decoding.settings(spec, **options)
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
    return _decoding.loop(stepper, prompt, chosen, keep_logits)


def check_generation(
    run: Callable[[GreedyRecord], Generated],
    spec: GenerationSpec,
    *,
    rtol: float,
    atol: float,
    quantized: str | None = None,
) -> Check:
    """Greedy generation in onnxruntime against the source's recorded tokens (and logits at each step).

    A quantized model is not expected to keep every token; its agreement is reported and the
    check is neither passed nor failed.
    """
    record = spec.record
    if record is None or record.steps == 0:
        return Check(GENERATION, None, "no recorded generation from the source model to compare with")
    try:
        generated = run(record)
    except Exception as err:  # noqa: BLE001 - a generation that cannot run is a failed check
        return Check(GENERATION, False, f"greedy generation failed in onnxruntime: {first_line(err)}")
    prompt = record.input_ids.shape[1]
    want, got = record.tokens, generated.tokens
    if record.encoder_inputs is None:
        lengths = ", ".join(str(int(n)) for n in record.attention_mask.sum(axis=1))
        where = f"{record.steps} steps from {want.shape[0]} prompts of {lengths} tokens (left-padded)"
    else:
        where = f"{record.steps} steps from {want.shape[0]} encoder inputs"
    first = _first_difference(got[:, prompt:], want[:, prompt:])
    if quantized is not None:
        same = "identical" if first is None else f"identical until step {first[0]} (row {first[1]})"
        return Check(GENERATION, None, f"{quantized} model: greedy tokens {same} over {where}; not required")
    if first is not None:
        step, row = first
        g = int(got[row, prompt + step]) if prompt + step < got.shape[1] else None
        w = int(want[row, prompt + step]) if prompt + step < want.shape[1] else None
        detail = (
            f"greedy tokens differ at step {step}, row {row} (sequence position {prompt + step}): onnxruntime chose "
            f"{g}, the source model {w}"
        )
        if record.logits is not None and step < len(generated.logits):
            gap = float(np.abs(generated.logits[step][row] - record.logits[step][row]).max())
            detail += f"; logits at that step differ by up to {gap:.3g}"
        return Check(GENERATION, False, detail)
    if record.logits is None:
        return Check(GENERATION, True, f"greedy tokens identical to the recorded source tokens over {where}")
    worst = 0.0
    for step, (mine, theirs) in enumerate(zip(generated.logits, record.logits, strict=False)):
        diff = np.where(mine == theirs, 0.0, np.abs(mine.astype(np.float64) - theirs))  # equal infinities agree
        worst = max(worst, float(diff.max()))
        bad = diff > atol + rtol * np.abs(theirs)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            return Check(
                GENERATION,
                False,
                f"tokens agree but logits differ at step {step}, row {row}: max abs error {float(diff.max()):.3g} "
                f"(rtol={rtol:g}, atol={atol:g})",
            )
    return Check(
        GENERATION, True, f"greedy tokens identical to the source over {where}; logits max abs error {worst:.3g}"
    )


def _first_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, int] | None:
    """(step, row) of the first token that differs, or None."""
    steps = max(got.shape[1], want.shape[1])
    for step in range(steps):
        for row in range(want.shape[0]):
            g = got[row, step] if step < got.shape[1] else None
            w = want[row, step] if step < want.shape[1] else None
            if g != w:
                return step, row
    return None
