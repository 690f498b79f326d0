"""How a quantized decoder generates compared with its float parent: tokens, logits, speed.

Per-output error on the export sample says little about a language model; what users see is
the text. So greedy generation runs on a set of prompts (the ones validation uses, unpadded,
plus seeded random ones of other lengths) in both models, batch 1, and the report says on how
many prompts the tokens are identical, how far they agree, how close the logits are while both
models have seen the same tokens, and the tokens/s ratio measured side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.core import _timing
from onnxbridge.generation import _loop
from onnxbridge.generation._spec import GREEDY, GenerationSpec
from onnxbridge.quantize._types import GenerationQuality

if TYPE_CHECKING:
    import onnx

    from onnxbridge.running._session import Session

NEW_TOKENS = 16
STEPS = GREEDY.with_steps(NEW_TOKENS)
EXTRA_PROMPTS = (4, 12, 24)  # lengths of the seeded random prompts added to the recorded ones


def prompts(spec: GenerationSpec, model: onnx.ModelProto) -> list[np.ndarray]:
    """The recorded prompts without their padding, then seeded random ones."""
    found: list[np.ndarray] = []
    if spec.record is not None:
        for ids, mask in zip(spec.record.input_ids, spec.record.attention_mask, strict=True):
            found.append(ids[mask.astype(bool)][None, :])
    vocab = _vocabulary(model)
    rng = np.random.default_rng(1)
    special = set(spec.eos_token_id) | ({spec.pad_token_id} if spec.pad_token_id is not None else set())
    allowed = np.array([t for t in range(vocab) if t not in special], dtype=np.int64)
    found += [rng.choice(allowed, size=(1, length)) for length in EXTRA_PROMPTS]
    return found


def _vocabulary(model: onnx.ModelProto) -> int:
    logits = next(o for o in model.graph.output if o.name == "logits")
    return int(logits.type.tensor_type.shape.dim[-1].dim_value)


def measure(parent: Session, child: Session, spec: GenerationSpec, parent_model: onnx.ModelProto) -> GenerationQuality:
    """Greedy generation of both models on :func:`prompts`, compared token by token and timed."""
    no_eos = GenerationSpec(spec.task, (), spec.pad_token_id)  # every prompt runs all steps
    cosines: list[float] = []
    identical, agreed, total = 0, 0, 0
    chosen = prompts(spec, parent_model)
    for prompt in chosen:
        want = _loop.generate(parent, no_eos, prompt, None, STEPS, keep_logits=True)
        got = _loop.generate(child, no_eos, prompt, None, STEPS, keep_logits=True)
        new_want, new_got = want.tokens[0, prompt.shape[1] :], got.tokens[0, prompt.shape[1] :]
        differs = np.flatnonzero(new_want != new_got)
        same_until = int(differs[0]) if differs.size else NEW_TOKENS
        identical += not differs.size
        agreed += same_until
        total += NEW_TOKENS
        for step in range(min(same_until + 1, NEW_TOKENS)):  # the step that differs still saw the same prefix
            a, b = want.logits[step][0].astype(np.float64), got.logits[step][0].astype(np.float64)
            cosines.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    timed = chosen[-1]
    timing = _timing.compare(
        lambda: _loop.generate(child, no_eos, timed, None, STEPS),
        lambda: _loop.generate(parent, no_eos, timed, None, STEPS),
        rounds=7,
        calls=2,
        warmup=1,
    )
    return GenerationQuality(
        prompts=len(chosen),
        new_tokens=NEW_TOKENS,
        identical=identical,
        agreement=agreed / total,
        min_logits_cosine=min(cosines),
        mean_logits_cosine=float(np.mean(cosines)),
        tokens_per_second_ratio=1 / timing.ratio,
    )
