"""Mixture-of-experts layers in a form the exporter can trace, for the duration of an export.

transformers 5 runs experts through an implementation the model can switch
(``set_experts_implementation``); its ``batched_mm`` form gathers each token's top-k experts'
weights and is traced with symbolic shapes. Models whose experts loop over the experts the data
selects, with no switch (DBRX), get the same gathered form from a patch of their experts'
``forward``, installed on the class for the export only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["exportable_experts"]


@contextlib.contextmanager
def exportable_experts(model: Any, notes: list[str]) -> Iterator[None]:
    """Every mixture-of-experts layer of ``model`` in a gathered, traceable form while exporting; restored after.

    transformers' ``batched_mm`` where the model can switch to it, a patched ``forward`` where its
    experts loop (:data:`GATHERED`); ``notes`` says which.
    """
    with _batched_mm(model, notes), _gathered_forwards(model, notes):
        yield


@contextlib.contextmanager
def _batched_mm(model: Any, notes: list[str]) -> Iterator[None]:
    """Mixture-of-experts layers on transformers' ``batched_mm`` experts while exporting; restored after.

    transformers' default ``grouped_mm`` experts call ``torch.ops.transformers.grouped_mm_fallback``
    under the exporter, which has no ONNX translation; its ``eager`` experts loop over the experts
    that data selects. ``batched_mm`` gathers each token's top-k experts' weights and runs them as
    batched MatMuls: only the selected experts' work is computed (top-k of n experts' FLOPs), and
    every shape stays symbolic. When it switches, ``notes`` says so (once, however many graphs).
    """
    can_set = getattr(type(model), "_can_set_experts_implementation", None)
    if not hasattr(model, "set_experts_implementation") or can_set is None or not can_set():
        yield
        return
    before = model.get_experts_implementation()
    if set(before.values()) <= {"batched_mm"} or not _has_experts(model):
        yield
        return
    note = (
        f"mixture-of-experts layers exported on transformers' batched_mm experts (the model runs "
        f"{before.get('', next(iter(before.values())))!r}, restored after export): each token computes its "
        "top-k experts only"
    )
    if note not in notes:
        notes.append(note)
    model.set_experts_implementation("batched_mm")
    try:
        yield
    finally:
        model.set_experts_implementation(before)


def _has_experts(model: Any) -> bool:
    return any(hasattr(module, "_apply_gate") and hasattr(module, "num_experts") for module in model.modules())


def _gathered_dbrx(self: Any, hidden_states: Any, top_k_index: Any, top_k_weights: Any) -> Any:
    """DBRX's experts computed on each token's top-k experts only, gathered (no loop over the experts hit).

    The same arithmetic as ``DbrxExperts.forward``: per selected expert ``act(x w1^T) * (x v1^T)``
    then ``w2``, weighted by the router and summed over the top-k.
    """
    import torch

    batch = hidden_states.shape[0]
    tokens = hidden_states.reshape(-1, self.hidden_size)
    shape = (self.num_experts, self.ffn_hidden_size, self.hidden_size)
    w1, v1, w2 = (weight.view(shape)[top_k_index] for weight in (self.mlp.w1, self.mlp.v1, self.mlp.w2))
    gate = self.mlp.activation_fn(torch.einsum("th,tkfh->tkf", tokens, w1))
    states = torch.einsum("tkf,tkfh->tkh", gate * torch.einsum("th,tkfh->tkf", tokens, v1), w2)
    return (states * top_k_weights[..., None]).sum(dim=1).reshape(batch, -1, self.hidden_size)


# Experts classes that loop over the experts a batch selects, and their gathered replacement.
GATHERED: dict[str, Callable[..., Any]] = {"DbrxExperts": _gathered_dbrx}


@contextlib.contextmanager
def _gathered_forwards(model: Any, notes: list[str]) -> Iterator[None]:
    classes = {type(module) for module in model.modules() if type(module).__name__ in GATHERED}
    if not classes:
        yield
        return
    note = (
        f"mixture-of-experts layers ({', '.join(sorted(c.__name__ for c in classes))}) exported in a gathered form: "
        "each token computes its top-k experts only (the model's own forward loops over the experts a batch "
        "selects, which the exporter cannot trace; restored after export)"
    )
    if note not in notes:
        notes.append(note)
    saved = {cls: cls.forward for cls in classes}
    try:
        for cls in classes:
            cls.forward = GATHERED[cls.__name__]
        yield
    finally:
        for cls, forward in saved.items():
            cls.forward = forward
