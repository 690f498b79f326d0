"""The generation loop's parts: running one step with the cache in onnxruntime, choosing the next token.

:mod:`onnxbridge.generation._loop` puts them together for :meth:`Artifact.generate`. Steppers feed one
step's tokens to a session and keep the cache as ``OrtValue``s between steps (only the logits
come back to numpy); :func:`loop` chooses tokens the way ``transformers`` does (greedy, or
temperature, then top-k, then top-p, then a draw) and handles end-of-sequence and padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from onnxbridge.core._errors import InferenceError, InputError, UnsupportedSettingError, first_line
from onnxbridge.generation import _processing
from onnxbridge.generation._spec import SAMPLING_ONLY, ModelSettings

if TYPE_CHECKING:
    from onnxbridge.generation._spec import GenerationOptions, GenerationSpec
    from onnxbridge.running._session import Session

PAST = "past_key_values."
PRESENT = "present."
_LOGITS_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass
class Generated:
    """Sequences and, when asked for, the logits of every step."""

    tokens: np.ndarray
    logits: list[np.ndarray]
    steps: int


class Decoder:
    """A decoder-only session driven step by step; the cache stays in ``OrtValue``s."""

    def __init__(self, session: Session, *, shared: bool = False) -> None:
        names = list(session.input_names)
        self.cache = cache_pairs(session, ("input_ids", "attention_mask"), whole_sequence=True)
        # No cache inputs: a model that keeps no cache (GPT-1, XLNet); each step feeds the whole sequence.
        self.whole_sequence = not self.cache
        self.tokens = np.zeros((0, 0), dtype=np.int64)
        self.session = session.ort_session
        self.position_ids = "position_ids" in names
        shapes = {s.name: s.shape for s in session.inputs}
        # State-space decoders: one token per run (their recurrent form); the prompt goes token by token.
        self.one_token = list(shapes["input_ids"][1:2]) == [1]
        self.mask_column = list(shapes["attention_mask"][1:2]) == [1]  # the current token's mask only
        self.empty = empty_cache(session, [name for name, _ in self.cache])
        # The axis each cache input grows along (attention keys and values); None for fixed-size states.
        self.growing = {
            name: next((i for i, d in enumerate(shapes[name]) if i > 0 and not isinstance(d, int)), None)
            for name, _ in self.cache
        }
        self.outputs = ["logits", *(out for _, out in self.cache)]
        self.mask = np.zeros((0, 0), dtype=np.int64)
        self.past: dict[str, Any] = {}
        self.seen = 0  # tokens fed so far (the past's length)
        # GroupQueryAttention graphs: one context-long buffer per cache input, bound once as past and present
        self.shared = shared and bool(self.cache) and not (self.one_token or self.mask_column)
        self.bound: Any = None
        self.fed: list[Any] = []  # this step's input OrtValues, alive while bound
        self.logits = np.zeros((0, 0, 0), dtype=np.float32)

    def begin(self, attention_mask: np.ndarray, capacity: int | None = None) -> None:
        """Start from an empty cache; ``attention_mask`` covers the prompt; ``capacity``: the longest sequence."""
        self.mask = attention_mask
        self.seen = 0
        self.tokens = np.zeros((attention_mask.shape[0], 0), dtype=np.int64)
        if self.shared and capacity is not None:
            self._bind(attention_mask.shape[0], capacity)
        else:
            self.bound, self.past = None, start_cache(self.empty, attention_mask.shape[0])

    def _bind(self, batch: int, capacity: int) -> None:
        """Context-long zeroed buffers bound as each layer's past and present, and the logits' own array.

        The operator writes each step's keys and values into the buffer in place: nothing is
        handed back or copied between steps, and only the logits come back to numpy.
        """
        import onnxruntime as ort

        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        dtype = _LOGITS_DTYPES.get(logits.type)
        # logits of the last position only, of a known width: else the presents are handed back as before
        if dtype is None or len(logits.shape) != 3 or logits.shape[1] != 1 or not isinstance(logits.shape[-1], int):
            self.bound, self.past = None, start_cache(self.empty, batch)
            return
        self.logits = np.zeros((batch, 1, logits.shape[-1]), dtype=dtype)
        binding = self.session.io_binding()
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self.logits))
        self.past = {}
        for name, output in self.cache:
            shape, kind = self.empty[name]
            full = [capacity if axis + 1 == self.growing[name] else size for axis, size in enumerate(shape)]
            buffer = ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, *full), dtype=kind))
            binding.bind_ortvalue_input(name, buffer)
            binding.bind_ortvalue_output(output, buffer)
            self.past[name] = buffer
        self.bound = binding

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Logits for the last position ``(batch, vocab)``; the cache and mask move on by ``input_ids``."""
        if self.mask.shape[1] < self.seen + input_ids.shape[1]:  # one new token per row
            self.mask = np.concatenate([self.mask, np.ones((self.mask.shape[0], 1), dtype=np.int64)], axis=1)
        if self.whole_sequence:
            self.tokens = np.concatenate([self.tokens, input_ids], axis=1)
            self.seen = 0
            return self._run(self.tokens)
        if not self.one_token:
            return self._run(input_ids)
        if self.seen == 0 and not self.mask[:, : input_ids.shape[1]].all():
            return self._prompt_by_row(input_ids)
        for column in range(input_ids.shape[1]):
            logits = self._run(np.ascontiguousarray(input_ids[:, column : column + 1]))
        return logits

    def _prompt_by_row(self, input_ids: np.ndarray) -> np.ndarray:
        """A left-padded prompt for a one-token (state-space) graph: each row's own tokens, then one batch.

        Padding must not reach a row's recurrent state, as it does not in transformers' prompt
        form; fed token by token it would. Each row runs alone without its padding; then the
        states are stacked and the attention keys and values left-padded back to the prompt's
        width, where the attention mask hides them.
        """
        import onnxruntime as ort

        width, mask = input_ids.shape[1], self.mask
        logits, pasts = [], []
        for row in range(input_ids.shape[0]):
            tokens = input_ids[row : row + 1, mask[row, :width] == 1]
            self.mask, self.past, self.seen = np.ones_like(tokens), start_cache(self.empty, 1), 0
            for column in range(tokens.shape[1]):
                last = self._run(np.ascontiguousarray(tokens[:, column : column + 1]))
            logits.append(last)
            pasts.append({name: value.numpy() for name, value in self.past.items()})
        self.mask, self.seen = mask, width
        stacked = {}
        for name, axis in self.growing.items():
            parts = [past[name] for past in pasts]
            if axis is not None:
                parts = [
                    np.pad(p, [(width - p.shape[axis], 0) if a == axis else (0, 0) for a in range(p.ndim)])
                    for p in parts
                ]
            stacked[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=0)))
        self.past = stacked
        return np.concatenate(logits, axis=0)

    def _run(self, input_ids: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        self.seen += input_ids.shape[1]
        mask = self.mask[:, self.seen - 1 : self.seen] if self.mask_column else self.mask[:, : self.seen]
        feeds = dict(self.past)
        feeds["input_ids"] = ort.OrtValue.ortvalue_from_numpy(input_ids)
        feeds["attention_mask"] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(mask))
        if self.position_ids:
            spanned = self.mask[:, : self.seen]
            feeds["position_ids"] = ort.OrtValue.ortvalue_from_numpy(positions(spanned, input_ids.shape[1]))
        if self.bound is not None:
            return self._run_bound(feeds)
        logits, self.past = run_step(self.session, self.outputs, feeds, self.cache)
        return logits

    def _run_bound(self, feeds: dict[str, Any]) -> np.ndarray:
        """One step on the bound buffers: the new inputs bound, the logits read from their own array."""
        self.fed = [feeds[name] for name in ("input_ids", "attention_mask", "position_ids") if name in feeds]
        for name in ("input_ids", "attention_mask", "position_ids"):
            if name in feeds:
                self.bound.bind_ortvalue_input(name, feeds[name])
        try:
            self.session.run_with_iobinding(self.bound)
        except Exception as err:
            raise InferenceError(f"onnxruntime failed during generation: {first_line(err)}") from err
        return self.logits[:, -1, :].copy()  # the array is written again by the next step


def cache_pairs(session: Session, required: Sequence[str], *, whole_sequence: bool = False) -> list[tuple[str, str]]:
    """(input, output) name pairs of the self-attention cache; :class:`InputError` if the graph cannot generate.

    With ``whole_sequence``, a graph without cache inputs is accepted (no pairs): it is run on
    the whole sequence at every step.
    """
    names = list(session.input_names)
    outputs = set(session.output_names)
    pairs = [
        (name, PRESENT + name[len(PAST) :])
        for name in names
        if name.startswith(PAST) and not name.endswith((".encoder.key", ".encoder.value"))
    ]
    missing = [] if pairs or whole_sequence else ["past_key_values.* inputs"]
    missing += [n for n in required if n not in names]
    missing += [n for n in ["logits", *(out for _, out in pairs)] if n not in outputs]
    if missing:
        raise InputError(
            f"This model cannot generate: it lacks {', '.join(missing)}. "
            "generate() needs a decoder exported with its KV cache: "
            "ob.export(model, task='text-generation') for a transformers causal LM."
        )
    return pairs


def empty_cache(session: Session, names: Sequence[str]) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Per cache input, its shape before the first step (after the batch axis) and dtype.

    From the graph's declared shapes: a symbolic axis is the past's length, so it starts at 0
    (attention keys and values: heads x 0 x head size); fixed axes keep their size (state-space
    conv and recurrent states start as zeros of their full size).
    """
    specs = {s.name: s for s in session.inputs}
    empty: dict[str, tuple[tuple[int, ...], Any]] = {}
    for name in names:
        shape = specs[name].shape
        if len(shape) < 2:
            raise InputError(f"Cache input {name!r} has shape {shape}; expected (batch, ...) with the past's axes.")
        empty[name] = (tuple(d if isinstance(d, int) else 0 for d in shape[1:]), specs[name].dtype)
    return empty


def start_cache(empty: dict[str, tuple[tuple[int, ...], Any]], batch: int) -> dict[str, Any]:
    """Empty cache tensors for ``batch`` sequences, as ``OrtValue``s."""
    import onnxruntime as ort

    return {
        name: ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, *shape), dtype=dtype))
        for name, (shape, dtype) in empty.items()
    }


def run_step(
    session: Any, outputs: list[str], feeds: dict[str, Any], cache: list[tuple[str, str]]
) -> tuple[np.ndarray, dict[str, Any]]:
    """One run: the last position's logits as numpy, the presents as the next step's past."""
    try:
        values = session.run_with_ort_values(outputs, feeds)
    except Exception as err:
        raise InferenceError(f"onnxruntime failed during generation: {first_line(err)}") from err
    logits = values[0].numpy()
    present = {name: values[i + 1] for i, (name, _) in enumerate(cache)}
    return logits[:, -1, :], present


def positions(attention_mask: np.ndarray, new: int) -> np.ndarray:
    """Position ids of the last ``new`` tokens: padding skipped, as transformers counts them."""
    counted = np.cumsum(attention_mask, axis=-1) - 1
    counted[attention_mask == 0] = 0
    return np.ascontiguousarray(counted[:, -new:], dtype=np.int64)


@dataclass
class Settings:
    """How each next token is chosen and when a row ends (checked by :func:`settings`)."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float | None
    rng: np.random.Generator
    eos: tuple[int, ...]
    pad: int | None
    rules: ModelSettings = field(default_factory=ModelSettings)


def settings(spec: GenerationSpec, options: GenerationOptions) -> Settings:
    """The settings of one call: the user's options, the model's own settings where the user gave none.

    Raises:
        UnsupportedSettingError: The model's generation config sets something the loop does not
            apply (beam search, typical sampling, ...): generating anyway would silently give
            other tokens than ``transformers``.
    """
    model = spec.settings
    eos = spec.eos_token_id if options.eos_token_id is None else _ids(options.eos_token_id)
    pad = options.pad_token_id if options.pad_token_id is not None else spec.pad_token_id
    if pad is None and eos:
        pad = eos[0]  # what transformers does when a model has no pad token
    do_sample = model.do_sample if options.do_sample is None else options.do_sample
    unsupported = {
        name: value
        for name, value in model.unsupported.items()
        if not (name == "num_beams" and options.num_beams == 1) and (do_sample or name not in SAMPLING_ONLY)
    }
    if unsupported:
        found = ", ".join(f"{name}={value!r}" for name, value in unsupported.items())
        override = (
            " Pass num_beams=1 to generate greedily instead of beam search." if "num_beams" in unsupported else ""
        )
        raise UnsupportedSettingError(
            f"The model's generation_config sets {found}, which onnxbridge's generate() does not apply: it would give "
            f"other tokens than transformers' model.generate().{override} To generate without "
            f"{'it' if len(unsupported) == 1 else 'them'}, set model.generation_config.<name> = None before "
            "ob.export(); or generate with transformers."
        )
    overrides = {
        name: value
        for name in ("repetition_penalty", "no_repeat_ngram_size", "min_new_tokens")
        if (value := getattr(options, name)) is not None
    }
    top_k = model.top_k if options.top_k is None else (options.top_k or None)
    return Settings(
        int(options.max_new_tokens),
        bool(do_sample),
        model.temperature if options.temperature is None else float(options.temperature),
        top_k,
        model.top_p if options.top_p is None else options.top_p,
        np.random.default_rng(options.seed),
        eos,
        pad,
        replace(model, **overrides) if overrides else model,
    )


class Stepper(Protocol):
    """One step of a generation: the tokens of this step in, the last position's logits out."""

    def step(self, input_ids: np.ndarray) -> np.ndarray: ...


def loop(
    stepper: Stepper,
    prompt: np.ndarray,
    chosen: Settings,
    keep_logits: bool,
    padding: np.ndarray | None = None,
    encoder_ids: np.ndarray | None = None,
) -> Generated:
    """Feed ``prompt``, then each chosen token, until ``max_new_tokens`` or every row has ended.

    ``padding`` is the number of left-padding tokens per row (the repetition penalty skips them);
    ``encoder_ids`` the encoder's input ids (a decoder-only model's prompt), for the encoder rules.
    """
    batch = prompt.shape[0]
    sequences, current = prompt, prompt
    unfinished = np.ones(batch, dtype=bool)
    kept: list[np.ndarray] = []
    steps = 0
    context = _processing.Context(
        prompt.shape[1], prompt.shape[1] + chosen.max_new_tokens, padding, chosen.eos, encoder_ids
    )
    eos = np.asarray(chosen.eos, dtype=np.int64)
    for _ in range(chosen.max_new_tokens):
        logits = stepper.step(current)
        steps += 1
        if keep_logits:
            kept.append(logits)  # as the model gave them, like transformers' output_logits
        logits = _processing.process(logits, sequences, chosen.rules, context)
        if chosen.do_sample:
            tokens = _sample(logits, chosen.rng, chosen.temperature, chosen.top_k, chosen.top_p)
        else:
            tokens = logits.argmax(axis=-1)
        if chosen.eos:
            tokens = np.where(unfinished, tokens, chosen.pad if chosen.pad is not None else 0)
            unfinished &= ~(tokens[:, None] == eos).any(axis=1)  # np.isin costs 0.1 ms a step
        current = tokens.astype(np.int64)[:, None]
        sequences = np.concatenate([sequences, current], axis=1)
        if not unfinished.any():
            break
    return Generated(sequences, kept, steps)


class Seq2SeqDecoder:
    """An encoder session run once, then a decoder session step by step (encoder outputs fed every step)."""

    def __init__(self, encoder: Session, decoder: Session) -> None:
        self.cache = cache_pairs(decoder, ("decoder_input_ids",))
        self.encoder = encoder
        self.session = decoder.ort_session
        self.decoder_inputs = set(decoder.input_names)
        self.empty = empty_cache(decoder, [name for name, _ in self.cache])
        self.outputs = ["logits", *(out for _, out in self.cache)]
        self.fixed: dict[str, Any] = {}
        self.past: dict[str, Any] = {}

    def begin(self, inputs: dict[str, np.ndarray]) -> int:
        """Run the encoder; returns the batch size."""
        import onnxruntime as ort

        encoded = self.encoder.run(inputs)
        fixed = {}
        for name, value in encoded.items():
            target = PAST + name[len(PRESENT) :] if name.startswith(PRESENT) else name
            if target in self.decoder_inputs:
                fixed[target] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
        if "encoder_attention_mask" in self.decoder_inputs:
            mask = inputs.get("attention_mask")
            batch, length = encoded["encoder_hidden_states"].shape[:2]
            mask = np.ones((batch, length), dtype=np.int64) if mask is None else np.asarray(mask, dtype=np.int64)
            fixed["encoder_attention_mask"] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(mask))
        missing = sorted(self.decoder_inputs - set(fixed) - {"decoder_input_ids"} - {n for n, _ in self.cache})
        if missing:
            raise InputError(f"The encoder's outputs do not feed the decoder's inputs {missing}.")
        self.fixed = fixed
        batch = int(encoded["encoder_hidden_states"].shape[0])
        self.past = start_cache(self.empty, batch)
        return batch

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        feeds = {**self.fixed, **self.past, "decoder_input_ids": ort.OrtValue.ortvalue_from_numpy(input_ids)}
        logits, self.past = run_step(self.session, self.outputs, feeds, self.cache)
        return logits


def token_matrix(value: Any, name: str) -> np.ndarray:
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


def checked_mask(value: Any, shape: tuple[int, ...]) -> np.ndarray:
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


def _sample(
    logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """A draw from :func:`probabilities` (numpy's generator, not torch's: reproducible by seed, not by torch's)."""
    probs = probabilities(logits, temperature, top_k, top_p)
    draws = rng.random((probs.shape[0], 1))
    return np.minimum((np.cumsum(probs, axis=-1) < draws).sum(axis=-1), probs.shape[-1] - 1)


def probabilities(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    """What a sampled token is drawn from: temperature, then top-k, then top-p, then softmax (transformers' order)."""
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
    return _softmax(scores)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
