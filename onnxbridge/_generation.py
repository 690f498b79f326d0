"""Text generation with a decoder exported with its KV cache: a small, readable loop.

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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge._errors import InferenceError, InputError, first_line
from onnxbridge._validation import Check

if TYPE_CHECKING:
    from onnxbridge._session import Session

__all__ = ["GenerationSpec", "Generated", "GreedyRecord", "generate", "check_generation"]

PAST = "past_key_values."
PRESENT = "present."
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
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: np.ndarray
    logits: list[np.ndarray] | None = None

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
    """

    task: str
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None
    record: GreedyRecord | None = field(default=None, repr=False)
    max_length: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form for a saved file's metadata (record logits left out)."""
        data: dict[str, Any] = {
            "task": self.task,
            "eos_token_id": list(self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "max_length": self.max_length,
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
            record=None
            if record is None
            else GreedyRecord(
                np.asarray(record["input_ids"], dtype=np.int64),
                np.asarray(record["attention_mask"], dtype=np.int64),
                np.asarray(record["tokens"], dtype=np.int64),
            ),
        )


@dataclass
class Generated:
    """Sequences and, when asked for, the logits of every step."""

    tokens: np.ndarray
    logits: list[np.ndarray]
    steps: int


class Decoder:
    """One decoder session driven step by step; the cache stays in ``OrtValue``s."""

    def __init__(self, session: Session) -> None:
        names = list(session.input_names)
        outputs = set(session.output_names)
        self.cache = [(name, PRESENT + name[len(PAST) :]) for name in names if name.startswith(PAST)]
        missing = [n for n in ("input_ids", "attention_mask") if n not in names]
        missing += [n for n in ["logits", *(out for _, out in self.cache)] if n not in outputs]
        if missing or not self.cache:
            raise InputError(
                f"This model cannot generate: it lacks {', '.join(missing) or 'past_key_values.* inputs'}. "
                "generate() needs a decoder exported with its KV cache: "
                "ob.export(model, task='text-generation') for a transformers causal LM."
            )
        self.session = session.ort_session
        self.position_ids = "position_ids" in names
        specs = {s.name: s for s in session.inputs}
        self.empty: dict[str, tuple[tuple[int, ...], Any]] = {}
        for name, _ in self.cache:
            shape = specs[name].shape
            if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
                raise InputError(f"Cache input {name!r} has shape {shape}; expected (batch, heads, past, head_dim).")
            self.empty[name] = ((shape[1], 0, shape[3]), specs[name].dtype)
        self.outputs = ["logits", *(out for _, out in self.cache)]

    def start(self, batch: int) -> dict[str, Any]:
        """An empty cache for ``batch`` sequences."""
        import onnxruntime as ort

        return {
            name: ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, *shape), dtype=dtype))
            for name, (shape, dtype) in self.empty.items()
        }

    def step(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, past: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Logits for the last position ``(batch, vocab)`` and the cache to feed next."""
        import onnxruntime as ort

        feeds = dict(past)
        feeds["input_ids"] = ort.OrtValue.ortvalue_from_numpy(input_ids)
        feeds["attention_mask"] = ort.OrtValue.ortvalue_from_numpy(attention_mask)
        if self.position_ids:
            feeds["position_ids"] = ort.OrtValue.ortvalue_from_numpy(positions(attention_mask, input_ids.shape[1]))
        try:
            values = self.session.run_with_ort_values(self.outputs, feeds)
        except Exception as err:
            raise InferenceError(f"onnxruntime failed during generation: {first_line(err)}") from err
        logits = values[0].numpy()
        present = {name: values[i + 1] for i, (name, _) in enumerate(self.cache)}
        return logits[:, -1, :], present


def positions(attention_mask: np.ndarray, new: int) -> np.ndarray:
    """Position ids of the last ``new`` tokens: padding skipped, as transformers counts them."""
    counted = np.cumsum(attention_mask, axis=-1) - 1
    counted[attention_mask == 0] = 0
    return np.ascontiguousarray(counted[:, -new:], dtype=np.int64)


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
    """The loop behind :meth:`Artifact.generate`; see there for the arguments."""
    decoder = Decoder(session)
    ids = _token_matrix(input_ids, "input_ids")
    mask = np.ones_like(ids) if attention_mask is None else _mask(attention_mask, ids.shape)
    _check_settings(max_new_tokens, temperature, top_k, top_p)
    if spec.max_length is not None and ids.shape[1] + max_new_tokens > spec.max_length:
        raise InputError(
            f"{ids.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed {spec.max_length}, the model's "
            "sliding attention window: past it the exported graph (which keeps the whole past) no longer computes "
            "what the model computes. Shorten the prompt or max_new_tokens."
        )
    eos = spec.eos_token_id if eos_token_id is None else _ids(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else spec.pad_token_id
    if pad is None and eos:
        pad = eos[0]  # what transformers does when a model has no pad token
    rng = np.random.default_rng(seed)
    batch = ids.shape[0]
    past = decoder.start(batch)
    sequences, current = ids, ids
    unfinished = np.ones(batch, dtype=bool)
    kept: list[np.ndarray] = []
    steps = 0
    for _ in range(max_new_tokens):
        logits, past = decoder.step(current, mask, past)
        steps += 1
        if keep_logits:
            kept.append(logits)
        chosen = _sample(logits, rng, temperature, top_k, top_p) if do_sample else logits.argmax(axis=-1)
        if eos:
            chosen = np.where(unfinished, chosen, pad if pad is not None else 0)
            unfinished &= ~np.isin(chosen, eos)
        current = chosen.astype(np.int64)[:, None]
        sequences = np.concatenate([sequences, current], axis=1)
        mask = np.concatenate([mask, np.ones((batch, 1), dtype=mask.dtype)], axis=1)
        if not unfinished.any():
            break
    return Generated(sequences, kept, steps)


def _token_matrix(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0 or array.shape[0] == 0:
        raise InputError(
            f"{name} has shape {array.shape}; expected token ids shaped (batch, length) with at least one token, "
            "e.g. tokenizer(texts, return_tensors='np', padding=True)['input_ids']."
        )
    if array.dtype.kind not in "iu":
        raise InputError(f"{name} has dtype {array.dtype}; token ids must be integers (int64).")
    if (array < 0).any():
        raise InputError(f"{name} holds negative token ids ({int(array.min())}); ids start at 0.")
    return np.ascontiguousarray(array, dtype=np.int64)


def _mask(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(value)
    if mask.ndim == 1:
        mask = mask[None, :]
    if mask.shape != shape:
        raise InputError(f"attention_mask has shape {mask.shape}; it must match input_ids {shape}.")
    if mask.size and not np.isin(mask, (0, 1)).all():
        raise InputError("attention_mask must hold only 0 (padding) and 1 (token).")
    if (mask.sum(axis=1) == 0).any():
        raise InputError("A row of attention_mask is all padding; every prompt needs at least one token.")
    if (np.diff(mask.astype(np.int64), axis=1) < 0).any():
        raise InputError(
            "attention_mask has padding after a token (right padding). Decoders generate after the last "
            "position, so pad on the left: tokenizer.padding_side = 'left'."
        )
    return np.ascontiguousarray(mask, dtype=np.int64)


def _ids(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)


def _check_settings(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens={max_new_tokens!r}: expected an int >= 0.")
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature={temperature!r}: expected a float > 0 (1.0 leaves the logits as they are).")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise InputError(f"top_k={top_k!r}: expected an int >= 1, or None for no top-k filter.")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise InputError(f"top_p={top_p!r}: expected a float in (0, 1], or None for no nucleus filter.")


def _sample(
    logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """Temperature, then top-k, then top-p, then a draw: transformers' order."""
    scores = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    if top_p is not None and top_p < 1:
        order = np.argsort(scores, axis=-1)  # ascending, as transformers sorts
        ranked = np.take_along_axis(scores, order, axis=-1)
        cumulative = np.cumsum(_softmax(ranked), axis=-1)
        drop = cumulative <= 1 - top_p
        drop[:, -1] = False  # always keep the most likely token
        removed = np.zeros_like(drop)
        np.put_along_axis(removed, order, drop, axis=-1)
        scores = np.where(removed, -np.inf, scores)
    probs = _softmax(scores)
    draws = rng.random((scores.shape[0], 1))
    return np.minimum((np.cumsum(probs, axis=-1) < draws).sum(axis=-1), scores.shape[-1] - 1)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def check_generation(
    session: Callable[[], Session], spec: GenerationSpec, *, rtol: float, atol: float, quantized: str | None = None
) -> Check:
    """Greedy generation in onnxruntime against the source's recorded tokens (and logits at each step).

    A quantized model is not expected to keep every token; its agreement is reported and the
    check is neither passed nor failed.
    """
    record = spec.record
    if record is None or record.steps == 0:
        return Check(GENERATION, None, "no recorded generation from the source model to compare with")
    try:
        run = generate(
            session(), spec, record.input_ids, record.attention_mask, max_new_tokens=record.steps, keep_logits=True
        )
    except Exception as err:  # noqa: BLE001 - a generation that cannot run is a failed check
        return Check(GENERATION, False, f"greedy generation failed in onnxruntime: {first_line(err)}")
    prompt = record.input_ids.shape[1]
    want, got = record.tokens, run.tokens
    lengths = ", ".join(str(int(n)) for n in record.attention_mask.sum(axis=1))
    where = f"{record.steps} steps from {want.shape[0]} prompts of {lengths} tokens (left-padded)"
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
        if record.logits is not None and step < len(run.logits):
            gap = float(np.abs(run.logits[step][row] - record.logits[step][row]).max())
            detail += f"; logits at that step differ by up to {gap:.3g}"
        return Check(GENERATION, False, detail)
    if record.logits is None:
        return Check(GENERATION, True, f"greedy tokens identical to the recorded source tokens over {where}")
    worst = 0.0
    for step, (mine, theirs) in enumerate(zip(run.logits, record.logits, strict=False)):
        diff = np.abs(mine.astype(np.float64) - theirs)
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
