"""What generation needs beyond the graph: the model's settings, the tokens it was recorded giving, the user's options.

Plain values, shared by the loop, validation's generation check, files (saved as JSON) and the adapters
that record them at export time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import numpy as np

from onnxbridge.core._errors import InputError

__all__ = ["GenerationKwargs", "GenerationOptions", "GenerationSpec", "GreedyRecord", "ModelSettings"]

# Settings of transformers' GenerationConfig that onnxbridge's loop does not apply, and their neutral values:
# a model that sets one gets a typed error from generate() rather than tokens that silently differ.
UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "dola_layers": None,
    "num_return_sequences": 1,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_p": None,
    "top_h": None,
    "exponential_decay_length_penalty": None,
    "sequence_bias": None,
    "guidance_scale": None,
    "watermarking_config": None,
    "remove_invalid_values": False,
    "constraints": None,
    "force_words_ids": None,
    "stop_strings": None,
    "max_time": None,
}
# Of those, the ones that change only sampled tokens: greedy search is unaffected by them.
SAMPLING_ONLY = frozenset({"typical_p", "epsilon_cutoff", "eta_cutoff", "min_p", "top_h"})


@dataclass(frozen=True)
class ModelSettings:
    """The model's own generation settings (``transformers``' ``generation_config``), as :meth:`generate` applies them.

    Applied in transformers' order, to the logits of every step: encoder repetition penalty,
    repetition penalty, no-repeat n-gram, encoder no-repeat n-gram, bad words, minimum length,
    minimum new tokens, forced BOS, forced EOS, suppressed tokens, tokens suppressed at the first
    step; then, when sampling, temperature, top-k, top-p.

    Attributes:
        do_sample, temperature, top_k, top_p: Sampling defaults (the call's own values win).
        repetition_penalty: Divides positive (multiplies negative) logits of tokens already in the
            sequence, prompt included, left padding excluded.
        encoder_repetition_penalty: Multiplies positive (divides negative) logits of tokens in the
            encoder's input ids (a decoder-only model's prompt).
        no_repeat_ngram_size: No n-gram of this size occurs twice in a sequence.
        encoder_no_repeat_ngram_size: No n-gram of the encoder's input ids (a decoder-only model's
            prompt) is repeated.
        bad_words_ids: Token sequences never generated (their last token is banned after the rest).
        min_length: Sequences (prompt included) shorter than this cannot end.
        min_new_tokens: Fewer new tokens than this cannot end a sequence.
        forced_bos_token_id: Forced as the first new token after a one-token prompt.
        forced_eos_token_id: Forced as the last token when ``max_new_tokens`` is reached.
        suppress_tokens: Never generated.
        begin_suppress_tokens: Not generated at the first free step.
        unsupported: Settings the model sets that the loop does not apply, with their values.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    encoder_repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    encoder_no_repeat_ngram_size: int | None = None
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    min_length: int | None = None
    min_new_tokens: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: tuple[int, ...] = ()
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    unsupported: dict[str, Any] = field(default_factory=dict)

    @property
    def applies_nothing(self) -> bool:
        """Whether no setting changes the logits (temperature and the sampling filters aside)."""
        return not (
            self.encoder_repetition_penalty
            or self.repetition_penalty not in (None, 1)
            or self.no_repeat_ngram_size
            or self.encoder_no_repeat_ngram_size
            or self.bad_words_ids
            or self.min_length
            or self.min_new_tokens
            or self.forced_bos_token_id is not None
            or self.forced_eos_token_id
            or self.suppress_tokens
            or self.begin_suppress_tokens
        )

    @classmethod
    def from_generation_config(cls, config: Any) -> ModelSettings:
        """Read a ``transformers.GenerationConfig`` (its unset fields mean transformers' defaults)."""

        def ids(value: Any) -> tuple[int, ...]:
            if value is None:
                return ()
            return (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)

        def get(name: str, default: Any = None) -> Any:
            value = getattr(config, name, None)
            return default if value is None else value

        unsupported = {}
        for name, neutral in UNSUPPORTED_DEFAULTS.items():
            value = getattr(config, name, None)
            if value is not None and value != neutral and not (name == "guidance_scale" and value == 1):
                unsupported[name] = value if isinstance(value, (int, float, str, bool)) else repr(value)
        return cls(
            do_sample=bool(get("do_sample", False)),
            temperature=float(get("temperature", 1.0)),
            top_k=int(get("top_k", 50)) or None,
            top_p=None if float(get("top_p", 1.0)) >= 1 else float(get("top_p")),
            repetition_penalty=None if float(get("repetition_penalty", 1.0)) == 1 else float(get("repetition_penalty")),
            encoder_repetition_penalty=None
            if float(get("encoder_repetition_penalty", 1.0)) == 1
            else float(get("encoder_repetition_penalty")),
            no_repeat_ngram_size=int(get("no_repeat_ngram_size", 0)) or None,
            encoder_no_repeat_ngram_size=int(get("encoder_no_repeat_ngram_size", 0)) or None,
            bad_words_ids=tuple(ids(words) for words in get("bad_words_ids", ())),
            min_length=int(get("min_length", 0)) or None,
            min_new_tokens=int(get("min_new_tokens", 0)) or None,
            forced_bos_token_id=None if config.forced_bos_token_id is None else int(config.forced_bos_token_id),
            forced_eos_token_id=ids(config.forced_eos_token_id),
            suppress_tokens=ids(config.suppress_tokens),
            begin_suppress_tokens=ids(config.begin_suppress_tokens),
            unsupported=unsupported,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form (tuples as lists)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["bad_words_ids"] = [list(words) for words in self.bad_words_ids]
        for name in ("forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSettings:
        """The inverse of :meth:`to_json`; unknown keys (from newer versions) are left out."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens"):
            if name in known:
                known[name] = tuple(int(t) for t in known[name])
        if "bad_words_ids" in known:
            known["bad_words_ids"] = tuple(tuple(int(t) for t in words) for words in known["bad_words_ids"])
        return cls(**known)


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
        settings: The model's own generation settings, applied by every call.
        shared_cache: The graph takes one context-long buffer per layer as past and present
            (``GroupQueryAttention`` only): :meth:`generate` binds them once instead of
            handing the presents back each step.
    """

    task: str
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None
    record: GreedyRecord | None = field(default=None, repr=False)
    max_length: int | None = None
    decoder_start_token_id: int | None = None
    settings: ModelSettings = field(default_factory=ModelSettings)
    shared_cache: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form for a saved file's metadata (record logits left out)."""
        data: dict[str, Any] = {
            "task": self.task,
            "eos_token_id": list(self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "max_length": self.max_length,
            "decoder_start_token_id": self.decoder_start_token_id,
            "settings": self.settings.to_json(),
            "shared_cache": self.shared_cache,
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
        settings = dict(data.get("settings") or {})
        for old in ("suppress_tokens", "begin_suppress_tokens"):  # files written before settings were recorded
            if data.get(old):
                settings.setdefault(old, data[old])
        return cls(
            task=str(data["task"]),
            eos_token_id=tuple(int(t) for t in data.get("eos_token_id", ())),
            pad_token_id=None if data.get("pad_token_id") is None else int(data["pad_token_id"]),
            max_length=None if data.get("max_length") is None else int(data["max_length"]),
            decoder_start_token_id=None
            if data.get("decoder_start_token_id") is None
            else int(data["decoder_start_token_id"]),
            settings=ModelSettings.from_json(settings),
            shared_cache=bool(data.get("shared_cache", False)),
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

    ``None`` means the model's own setting (:class:`ModelSettings`), as in ``transformers``.

    Attributes:
        max_new_tokens: Most tokens to add to each prompt (default 32).
        do_sample: Sample instead of taking the most likely token (the model's default: greedy
            unless its ``generation_config`` says otherwise).
        temperature: Divides the logits before sampling.
        top_k: Sample among the ``top_k`` most likely tokens only (0: no top-k filter; the
            default for transformers models is 50, as in transformers).
        top_p: Sample among the most likely tokens whose probabilities add up to ``top_p``.
        seed: Seed of the sampler (numpy), for reproducible samples.
        eos_token_id: Token(s) that end a sequence.
        pad_token_id: Token written after a sequence ended (default: the model's, or EOS).
        num_beams: Only 1 (greedy search or sampling): generates greedily for a model whose
            ``generation_config`` asks for beam search, which onnxbridge does not do.
        repetition_penalty: > 1 discourages tokens already in the sequence (1.0: off).
        no_repeat_ngram_size: No n-gram of this size occurs twice (0: off).
        min_new_tokens: No sequence ends before this many new tokens (0: off).

    Every setting of the model's ``generation_config`` the call does not override (forced
    BOS/EOS, bad words, minimum length, suppressed tokens, ...) applies as in transformers.
    """

    max_new_tokens: int = 32
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    eos_token_id: int | Sequence[int] | None = None
    pad_token_id: int | None = None
    num_beams: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    min_new_tokens: int | None = None

    def __post_init__(self) -> None:
        _count("max_new_tokens", self.max_new_tokens, 0, required=True)
        temperature, top_k, top_p, penalty = self.temperature, self.top_k, self.top_p, self.repetition_penalty
        if temperature is not None and not (
            isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0
        ):
            raise InputError(f"temperature={temperature!r}: expected a float > 0 (1.0 leaves the logits as they are).")
        _count("top_k", top_k, 0)
        if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise InputError(f"top_p={top_p!r}: expected a float in (0, 1], or None for the model's setting.")
        if penalty is not None and not (isinstance(penalty, (int, float)) and np.isfinite(penalty) and penalty > 0):
            raise InputError(f"repetition_penalty={penalty!r}: expected a float > 0 (1.0: no penalty).")
        _count("no_repeat_ngram_size", self.no_repeat_ngram_size, 0)
        _count("min_new_tokens", self.min_new_tokens, 0)
        if self.num_beams is not None and self.num_beams != 1:
            raise InputError(
                f"num_beams={self.num_beams!r}: onnxbridge generates with greedy search or sampling (num_beams=1) "
                "only. For beam search, generate with transformers (or onnxruntime-genai)."
            )

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any]) -> GenerationOptions:
        """Options from the keyword arguments of a ``generate()`` call; unknown names are refused."""
        unknown = sorted(set(keywords) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(
                f"generate() got unknown option(s) {', '.join(unknown)}; it takes "
                f"{', '.join(cls.__dataclass_fields__)} (see GenerationOptions)."
            )
        return cls(**keywords)

    def with_steps(self, steps: int) -> GenerationOptions:
        """The same options for ``steps`` new tokens."""
        return replace(self, max_new_tokens=steps)


def _count(name: str, value: Any, least: int, *, required: bool = False) -> None:
    """An int >= ``least`` (or ``None`` unless ``required``), else an :class:`InputError` naming it."""
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise InputError(f"{name}={value!r}: expected an int >= {least}" + ("." if required else ", or None."))


class GenerationKwargs(TypedDict, total=False):
    """The keyword arguments of :meth:`Artifact.generate`, as :class:`GenerationOptions` documents them."""

    max_new_tokens: int
    do_sample: bool | None
    temperature: float | None
    top_k: int | None
    top_p: float | None
    seed: int | None
    eos_token_id: int | Sequence[int] | None
    pad_token_id: int | None
    num_beams: int | None
    repetition_penalty: float | None
    no_repeat_ngram_size: int | None
    min_new_tokens: int | None


DEFAULT_OPTIONS = GenerationOptions()  # the defaults of Artifact.generate
GREEDY = GenerationOptions(do_sample=False, num_beams=1)  # what validation replays: the model's rules, greedily
