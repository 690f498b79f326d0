"""The caches of ``transformers`` decoders as flat tensors: what each kind holds, and the model's own cache rebuilt.

A graph cannot carry a ``DynamicCache`` object, so each tensor it holds becomes one graph input
(``past_key_values.{layer}.{part}``) and one output (``present.{layer}.{part}``):

=========================  ===========================================  ==============================
cache layer                parts                                        shape (after ``batch_size``)
=========================  ===========================================  ==============================
attention (``DynamicLayer``,  ``key``, ``value``                        heads x ``past_sequence_length``
sliding window)                                                          x head size (grows each step)
indexed attention          ``key``, ``value``, ``indexer``              as attention; ``indexer``: ``past_sequence_length``
(``DynamicIndexedLayer``)                                               x indexer head size
state space / linear       ``conv`` (and ``conv.{k}``), ``recurrent``   fixed: the layer's conv window and
attention (``LinearAttention``)  (and ``recurrent.{k}``)                 recurrent state (replaced each step)
hybrid layers              both of the above                            as above
MiniMax's ``linear_cache``  ``recurrent``                               fixed: heads x head size x head size
=========================  ===========================================  ==============================

A wrapper rebuilds the model's own cache from the flat tensors with the calls the model makes
itself (``DynamicCache.update`` for attention; the layer's ``lazy_initialization`` and state
tensors for linear attention; ``set_linear_cache`` for MiniMax), runs the model unchanged and
returns every part flat again. A model that keeps no cache at all (GPT-1, XLM, XLNet) becomes a
graph over the whole sequence, run again at every step as transformers runs it.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from onnxbridge.adapters.pytorch import inference
from onnxbridge.core._errors import ExportError, ModelConfigError

# DummyLayer: a layer with no cache; DynamicIndexedLayer: attention with an indexer's keys (sparse attention)
ATTENTION_KINDS = {"DynamicLayer", "DynamicSlidingWindowLayer", "DummyLayer", "DynamicIndexedLayer"}
LINEAR_KINDS = {
    "LinearAttentionLayer",
    "LinearAttentionAndFullAttentionLayer",
    "LinearAttentionAndSlidingWindowAttentionLayer",
}
WORKAROUND = (
    "Export without the cache instead: ob.export(model, sample, dynamic_axes, task='feature-extraction') "
    "exports forward() with use_cache=False; every new token then recomputes the whole prefix, so "
    "generating n tokens costs O(n^2) instead of O(n)."
)


@dataclass(frozen=True)
class Slot:
    """One tensor of the cache: a layer's key or value, or one of its conv or recurrent states."""

    layer: int
    part: str  # "key", "value", "indexer", "conv", "recurrent"
    index: int  # the layer's state index for conv/recurrent parts; 0 otherwise
    shape: tuple[int, ...]  # without the batch axis, 0 where the past's length goes
    kernel: int | None = None  # a conv state's kernel size
    axis: int | None = None  # the axis (batch first) that grows by the new tokens; None: fixed size

    @property
    def grows(self) -> bool:
        """Keys, values and indexer keys grow by the new tokens each step; states keep their shape."""
        return self.axis is not None

    @property
    def suffix(self) -> str:
        return f"{self.layer}.{self.part}" + (f".{self.index}" if self.index else "")


@dataclass(frozen=True)
class CacheLayout:
    """How a model hands its cache over: the container, every tensor in it, and how a step is called."""

    # "dynamic" (DynamicCache), "legacy" (tuples), "self-attention" (an EncoderDecoderCache's own part),
    # "linear-list" (a DynamicCache subclass keeping linear-attention states in a per-layer list, MiniMax's),
    # "none" (the model keeps no cache: each step runs the whole sequence)
    kind: str
    slots: tuple[Slot, ...]
    dtype: Any
    window: int | None = None  # the smallest sliding attention window, if any layer has one
    step_mask: bool = True  # whether transformers passes attention_mask to one-token steps
    container: Any = None  # kind "linear-list": the model's own cache class (MiniMax's)
    # Each layer's class and sliding window as probed, for layers a cache built from the config lacks
    # (Dory appends copies of its looped layers' caches past num_hidden_layers)
    layer_kinds: tuple[tuple[Any, int | None], ...] = ()

    @property
    def layers(self) -> int:
        return len({slot.layer for slot in self.slots})

    @property
    def recurrent(self) -> bool:
        """Whether any layer keeps conv or recurrent state (one code path for prompts, another per token)."""
        return any(not slot.grows for slot in self.slots)

    def input_names(self) -> list[str]:
        return [f"past_key_values.{slot.suffix}" for slot in self.slots]

    def output_names(self) -> list[str]:
        return [f"present.{slot.suffix}" for slot in self.slots]


def cache_keyword(model: Any) -> str:
    """The name ``forward()`` takes the cache by: ``cache`` in transformers 5 (``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The cache a model output carries, by its transformers 5 name or the older one (without the warning)."""
    fields = getattr(output, "__dataclass_fields__", {})
    return output.get("cache") if "cache" in fields else output.get("past_key_values")


def probe(torch: Any, transformers: Any, model: Any) -> CacheLayout:
    """Run the model on two tokens (then one more) and read how its cache is laid out; refuse kinds we cannot flatten."""
    ids = torch.zeros((1, 2), dtype=torch.long)
    with inference(model):
        out = model(input_ids=ids, use_cache=True)
    cache = returned_cache(out)
    name = type(model).__name__
    if cache is None and getattr(model.config, "is_decoder", None) is False:
        raise ModelConfigError(
            f"{name}'s config has is_decoder=False, so the model attends both ways, keeps no cache, and "
            "transformers' own generate() then sees only the newest token at each step (transformers warns: add "
            "is_decoder=True). This is the model's configuration, not the export: build it with is_decoder=True "
            f"(transformers.AutoModelForCausalLM.from_config(config) after config.is_decoder = True) to export it "
            f"for generation. {WORKAROUND}"
        )
    if cache is None:  # no cache to carry (GPT-1, XLM, XLNet, ...): transformers recomputes the prefix, as will we
        return CacheLayout("none", (), None)
    if isinstance(cache, tuple) and all(isinstance(layer, tuple) and len(layer) == 2 for layer in cache):
        pairs = [s for i, (key, value) in enumerate(cache) for s in _attention_slots(name, i, key, value)]
        return CacheLayout("legacy", tuple(pairs), cache[0][0].dtype)
    if type(cache) is transformers.EncoderDecoderCache and not any(
        isinstance(getattr(layer, "keys", None), torch.Tensor) and layer.keys.numel()
        for layer in cache.cross_attention_cache.layers
    ):
        # Encoders built as decoders (is_decoder=True) hand an EncoderDecoderCache with no cross-attention part.
        own = probe_layers(torch, model, cache.self_attention_cache)
        return CacheLayout("self-attention", own.slots, own.dtype, own.window)
    if isinstance(cache, transformers.DynamicCache) and isinstance(getattr(cache, "linear_cache", None), list):
        layout = _linear_list_layout(torch, model, cache)
    elif type(cache) is not transformers.DynamicCache:
        raise ExportError(
            f"{name} returns its cache as {type(cache).__module__}.{type(cache).__qualname__}, which onnxbridge does "
            f"not know how to flatten into past_key_values/present tensors (DynamicCache and the legacy tuple form "
            f"are supported). {WORKAROUND}"
        )
    else:
        layout = probe_layers(torch, model, cache)
    if not layout.recurrent:
        return layout
    # What transformers' own generate() passes to a one-token step (state-space models such as
    # Falcon-Mamba drop the attention mask after the prompt).
    step = model.prepare_inputs_for_generation(
        torch.zeros((1, 3), dtype=torch.long),
        attention_mask=torch.ones((1, 3), dtype=torch.long),
        use_cache=True,
        is_first_iteration=False,
        **{cache_keyword(model): cache},
    )
    return dataclasses.replace(layout, step_mask=step.get("attention_mask") is not None)


def _linear_list_layout(torch: Any, model: Any, cache: Any) -> CacheLayout:
    """A cache keeping each linear-attention layer's state in ``linear_cache[layer]`` (MiniMax's ``MiniMaxCache``).

    Those layers' states become ``recurrent`` slots (fixed size); the attention layers' keys and
    values are the cache's own ``DynamicLayer`` s, as in a ``DynamicCache``.
    """
    own = probe_layers(torch, model, cache)
    states = [
        Slot(i, "recurrent", 0, tuple(int(d) for d in state.shape[1:]))
        for i, state in enumerate(cache.linear_cache)
        if isinstance(state, torch.Tensor)
    ]
    slots = tuple(sorted((*own.slots, *states), key=lambda slot: (slot.layer, slot.part != "key")))
    dtype = own.dtype or (cache.linear_cache[states[0].layer].dtype if states else None)
    return CacheLayout("linear-list", slots, dtype, own.window, container=type(cache))


def probe_layers(torch: Any, model: Any, cache: Any) -> CacheLayout:
    """The slots of a ``DynamicCache``'s layers; refuse layer kinds we cannot flatten."""
    name = type(model).__name__
    kinds = {type(layer).__name__ for layer in cache.layers}
    if not kinds <= ATTENTION_KINDS | LINEAR_KINDS:
        raise ExportError(
            f"{name} keeps its cache in {', '.join(sorted(kinds - ATTENTION_KINDS - LINEAR_KINDS))} layers, which "
            f"onnxbridge does not flatten yet; attention (DynamicLayer, DynamicSlidingWindowLayer) and state-space "
            f"(LinearAttentionLayer) caches are supported. {WORKAROUND}"
        )
    slots: list[Slot] = []
    dtype = None
    for i, layer in enumerate(cache.layers):
        if type(layer).__name__ in LINEAR_KINDS:
            for part, states in (("conv", layer.conv_states), ("recurrent", layer.recurrent_states)):
                for index, state in states.items():
                    if isinstance(state, torch.Tensor):
                        kernel = layer.conv_kernel_size[index] if part == "conv" else None
                        slots.append(Slot(i, part, index, tuple(int(d) for d in state.shape[1:]), kernel))
                        dtype = dtype or state.dtype
        keys = getattr(layer, "keys", None)
        if isinstance(keys, torch.Tensor) and keys.numel():
            slots.extend(_attention_slots(name, i, keys, layer.values))
            dtype = dtype or keys.dtype
        indexer = getattr(layer, "indexer_keys", None)
        if isinstance(indexer, torch.Tensor) and indexer.numel():
            if getattr(layer, "indexer_position_ids", None) is not None:
                raise ExportError(
                    f"{name} keeps indexer position ids in its cache, which onnxbridge does not flatten yet. {WORKAROUND}"
                )
            slots.append(Slot(i, "indexer", 0, (0, int(indexer.shape[2])), axis=1))
    windows = [int(layer.sliding_window) for layer in cache.layers if hasattr(layer, "sliding_window")]
    layer_kinds = tuple((type(layer), getattr(layer, "sliding_window", None)) for layer in cache.layers)
    return CacheLayout("dynamic", tuple(slots), dtype, min(windows) if windows else None, layer_kinds=layer_kinds)


def _attention_slots(name: str, layer: int, key: Any, value: Any) -> list[Slot]:
    if key.dim() != 4 or value.dim() != 4:
        raise ExportError(f"{name}'s cache tensors have shapes {tuple(key.shape)}; expected 4-D per layer.")
    return [
        Slot(layer, "key", 0, (int(key.shape[1]), 0, int(key.shape[3])), axis=2),
        Slot(layer, "value", 0, (int(value.shape[1]), 0, int(value.shape[3])), axis=2),
    ]


def step_module(torch: Any, transformers: Any, model: Any, layout: CacheLayout, position_ids: bool) -> Any:
    """The model as one generation step on flat tensors.

    A model with no cache (``layout.kind == "none"``) runs the whole sequence each step, with the
    inputs its own ``prepare_inputs_for_generation`` makes (XLNet's permutation mask, XLM's
    language ids), as transformers' ``generate()`` does for it.

    For a layout with recurrent state the step takes one token per row (transformers' recurrent
    form, the one its ``generate()`` runs after the prompt); the prompt is fed one token at a
    time from zero states, which is what the full-sequence form computes. When transformers
    drops the attention mask after the prompt (``layout.step_mask`` false), the step takes the
    current token's mask column instead, so left padding is masked as in the prompt's form.
    """
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    if layout.kind == "none":
        return _whole_sequence_step(torch, model, position_ids)
    keyword = cache_keyword(model)
    slots = layout.slots

    class DecoderStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            input_ids, attention_mask = inputs[0], inputs[1]
            extra = {"position_ids": inputs[2]} if position_ids else {}
            past = inputs[3:] if position_ids else inputs[2:]
            cache = self._cache(past, attention_mask.shape[1] - input_ids.shape[1])
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{keyword: cache}, **extra, **keep
            )
            return (out.logits, *self._flat(returned_cache(out)))

        def _cache(self, past: tuple[Any, ...], length: Any) -> Any:
            if layout.kind == "legacy":
                return tuple((past[i], past[i + 1]) for i in range(0, len(past), 2))
            if layout.kind == "linear-list":
                return _linear_list_cache(layout, past)
            cache = transformers.DynamicCache(config=self.model.config)
            for kind, window in layout.layer_kinds[len(cache.layers) :]:  # layers past the config's own
                cache.layers.append(kind(sliding_window=window) if window is not None else kind())
            pairs: dict[int, dict[str, Any]] = {}
            for slot, tensor in zip(slots, past, strict=True):
                if slot.grows:
                    pairs.setdefault(slot.layer, {})[slot.part] = tensor
                else:
                    layer = cache.layers[slot.layer]
                    if slot.part == "conv":
                        layer.lazy_initialization(
                            conv_states=tensor, state_idx=slot.index, conv_kernel_size=slot.kernel
                        )
                        layer.conv_states[slot.index] = tensor.clone()
                    else:
                        layer.lazy_initialization(recurrent_states=tensor, state_idx=slot.index)
                        layer.recurrent_states[slot.index] = tensor.clone()
                    layer.has_previous_state[slot.index] = True
                    if layout.step_mask:  # the mask spans the past: its length is what the layer counted
                        layer.cumulative_length_linear = torch.full((), length, dtype=torch.long)
            for index in sorted(pairs):
                cache.update(pairs[index]["key"], pairs[index]["value"], index)
                if "indexer" in pairs[index]:  # after update: the layer is initialised
                    layer = cache.layers[index]
                    layer.lazy_initialization_indexer(pairs[index]["indexer"])
                    layer.indexer_keys = pairs[index]["indexer"]
            if layout.kind == "self-attention":
                return transformers.EncoderDecoderCache(cache, transformers.DynamicCache())
            return cache

        def _flat(self, present: Any) -> list[Any]:
            if layout.kind == "legacy":
                return [t for pair in present for t in pair]
            if layout.kind == "self-attention":
                present = present.self_attention_cache
            found = []
            for slot in slots:
                if layout.kind == "linear-list" and slot.part == "recurrent":
                    found.append(present.linear_cache[slot.layer])
                    continue
                layer = present.layers[slot.layer]
                if slot.grows:
                    found.append(
                        {"key": layer.keys, "value": layer.values, "indexer": getattr(layer, "indexer_keys", None)}[
                            slot.part
                        ]
                    )
                else:
                    states = layer.conv_states if slot.part == "conv" else layer.recurrent_states
                    found.append(states[slot.index])
            return found

    return DecoderStep()


def _linear_list_cache(layout: CacheLayout, past: tuple[Any, ...]) -> Any:
    """The model's own cache class rebuilt: states by ``set_linear_cache``, keys and values by ``update``."""
    cache = layout.container()
    pairs: dict[int, dict[str, Any]] = {}
    for slot, tensor in zip(layout.slots, past, strict=True):
        if slot.part == "recurrent":
            cache.set_linear_cache(slot.layer, tensor.clone())
        else:
            pairs.setdefault(slot.layer, {})[slot.part] = tensor
    for index in sorted(pairs):
        cache.update(pairs[index]["key"], pairs[index]["value"], index)
    return cache


def _whole_sequence_step(torch: Any, model: Any, position_ids: bool) -> Any:
    """A model without a cache as a step: the whole sequence in, the last position's logits out.

    Position ids are an input when the model takes them: transformers' ``generate()`` counts
    them from the attention mask (padding skipped) and passes them to every step.
    """

    class WholeSequenceStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:  # input_ids, attention_mask[, position_ids]: one name for the shapes
            extra = {"position_ids": inputs[2]} if position_ids else {}
            prepared = self.model.prepare_inputs_for_generation(
                inputs[0], attention_mask=inputs[1], use_cache=False, **extra
            )
            out = self.model(**{name: value for name, value in prepared.items() if value is not None})
            return (out.logits[:, -1:, :],)

    return WholeSequenceStep()
