"""A graph for the prompt beside the step graph, for decoders whose code branches on the past's length.

The step graph is traced with a past of 5 tokens. Where a model's Python code takes another path
when the past is empty (GIT widens its attention mask over image tokens only once there is a
past), that graph is wrong for the prompt. Then a second graph is traced on the prompt with an
empty cache, and the two are joined by an ONNX ``If`` on the past's length (:func:`onnxbridge.graph._branches.first_step_branch`): the model's inputs and
outputs stay those of one step graph, so ``generate()`` and validation do not change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxbridge.adapters import _hf_cache
from onnxbridge.adapters.pytorch import inference
from onnxbridge.generation._check import row_scale
from onnxbridge.generation._decoding import positions

__all__ = ["applies", "first_step_graph", "prompt_differs"]

NOTE = (
    "the model's code takes another path on the prompt (an empty past) than on later steps, so the graph "
    "holds both, traced apart and chosen by an If on the past's length"
)


def applies(layout: _hf_cache.CacheLayout) -> bool:
    """Whether a first-step graph can stand beside the step graph: attention caches that grow from empty."""
    return bool(layout.slots) and not layout.recurrent and layout.kind in ("dynamic", "legacy", "self-attention")


def growing_input(layout: _hf_cache.CacheLayout) -> tuple[str, int]:
    """A cache input whose length is the past's, and that axis: what the ``If`` reads."""
    slot = next(slot for slot in layout.slots if slot.axis is not None)
    return f"past_key_values.{slot.suffix}", int(slot.axis or 0)


def prompt_differs(torch: Any, step: Any, proto: Any, layout: _hf_cache.CacheLayout, position_ids: bool) -> bool:
    """Whether the step graph, run on a left-padded prompt with an empty past, gives other logits than the model.

    The wrapper runs the model's Python code at run time, so on an empty past it takes the
    prompt's path; the graph holds the path traced with a past. Errors are judged at each row's
    scale (``1e-3`` of its largest logit): a different path differs by far more.
    """
    from onnxbridge.running._session import Session

    try:
        dtype = _numpy_dtype(torch, layout.dtype)
    except TypeError:  # bfloat16 has no numpy dtype: no check (the generation check still runs)
        return False
    ids = np.array([[0, 0, 0, 5, 6, 7], [8, 9, 10, 11, 12, 13]], dtype=np.int64)
    mask = np.array([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=np.int64)
    feeds: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask}
    if position_ids:
        feeds["position_ids"] = positions(mask, ids.shape[1])  # as generate() counts them
    for slot in layout.slots:
        shape = tuple(0 if slot.grows and axis == slot.axis else size for axis, size in enumerate(slot.shape, 1))
        feeds[f"past_key_values.{slot.suffix}"] = np.zeros((2, *shape), dtype=dtype)
    try:
        got = Session(proto, providers=["cpu"]).run(feeds)["logits"][:, -1]
    except Exception:  # noqa: BLE001 - a step graph that cannot run on an empty past needs the prompt's graph
        return True
    with inference(step):
        want = step(*(torch.from_numpy(value) for value in feeds.values()))[0][:, -1].float().numpy()
    return bool((np.abs(got - want) > 1e-5 + 1e-3 * row_scale(want)).any())


def first_step_graph(torch: Any, step: Any, layout: _hf_cache.CacheLayout, position_ids: bool) -> tuple[Any, ...]:
    """The module the prompt's graph is traced from, and its sample: the step with an empty cache made inside.

    Returns ``(module, sample, input names)``.
    """

    class FirstStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.step = step

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            batch = inputs[0].shape[0]
            empty = [
                torch.zeros(
                    (batch, *(0 if slot.grows and a == slot.axis else n for a, n in enumerate(slot.shape, 1))),
                    dtype=layout.dtype,
                )
                for slot in layout.slots
            ]
            return tuple(self.step(*inputs, *empty))

    batch, length = 2, 4
    generator = torch.Generator().manual_seed(1)
    vocab = int(step.model.config.get_text_config().vocab_size)
    sample = [
        torch.randint(0, vocab, (batch, length), generator=generator),
        torch.ones((batch, length), dtype=torch.long),
    ]
    names = ["input_ids", "attention_mask"]
    if position_ids:
        sample.append(torch.arange(length).expand(batch, length).contiguous())
        names.append("position_ids")
    return FirstStep(), sample, names


def _numpy_dtype(torch: Any, dtype: Any) -> Any:
    return torch.empty((), dtype=dtype).numpy().dtype
