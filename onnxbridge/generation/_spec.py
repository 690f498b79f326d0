"""What generation needs beyond the graph: the model's settings, the tokens it was recorded giving, the user's options.

Plain values, shared by the loop, validation's generation check, files (saved as JSON) and the adapters
that record them at export time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxbridge.core._errors import InputError

__all__ = ["GenerationOptions", "GenerationSpec", "GreedyRecord"]


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


@dataclass(frozen=True)
class GenerationOptions:
    """How the user asked to generate: the keyword arguments of :meth:`Artifact.generate`, in one value.

    Attributes:
        max_new_tokens: Most tokens to add to each prompt.
        do_sample: Sample instead of taking the most likely token.
        temperature: Divides the logits before sampling.
        top_k: Sample among the ``top_k`` most likely tokens only.
        top_p: Sample among the most likely tokens whose probabilities add up to ``top_p``.
        seed: Seed of the sampler (numpy), for reproducible samples.
        eos_token_id: Token(s) that end a sequence; ``None``: the model's.
        pad_token_id: Token written after a sequence ended; ``None``: the model's (or EOS).
    """

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    eos_token_id: int | Sequence[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        max_new, temperature, top_k, top_p = self.max_new_tokens, self.temperature, self.top_k, self.top_p
        if isinstance(max_new, bool) or not isinstance(max_new, (int, np.integer)) or max_new < 0:
            raise InputError(f"max_new_tokens={max_new!r}: expected an int >= 0.")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature={temperature!r}: expected a float > 0 (1.0 leaves the logits as they are).")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise InputError(f"top_k={top_k!r}: expected an int >= 1, or None for no top-k filter.")
        if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise InputError(f"top_p={top_p!r}: expected a float in (0, 1], or None for no nucleus filter.")


DEFAULT_OPTIONS = GenerationOptions()  # the defaults of Artifact.generate
