"""Batch inference of an artifact on Ray Data.

``onnxbridge.ray.predict(dataset, artifact)`` adds the model's outputs as columns. Each actor
loads the model once, from the artifact's bytes in Ray's object store (or a path on shared
storage for large models), and keeps one onnxruntime session with the usual provider rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onnxbridge._artifact import Artifact
from onnxbridge.core._deps import require
from onnxbridge.core._errors import InputError
from onnxbridge.running import _batch
from onnxbridge.running._session import Session

__all__ = ["predict"]


def predict(
    dataset: Any,
    artifact: Artifact,
    *,
    batch_size: int = 1024,
    concurrency: int = 1,
    providers: Sequence[str] | str | None = None,
    strict: bool = False,
    input_columns: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
    output_columns: Mapping[str, str] | Sequence[str] | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    model_path: str | Path | None = None,
) -> Any:
    """Score a Ray ``Dataset``; returns a new ``Dataset`` with one column per model output.

    Args:
        dataset: A ``ray.data.Dataset``.
        artifact: The model to run.
        batch_size: Rows per onnxruntime call.
        concurrency: Number of actors (each holds one session).
        providers: Execution providers for every actor, as for :meth:`Artifact.session`.
        strict: Fail instead of falling back when a provider is missing on an actor.
        input_columns: ``{input_name: column}`` (a column of per-row arrays, reshaped to the
            input's shape), ``{input_name: [columns]}`` (scalar feature columns stacked, for
            tabular models), or a list of feature columns for a single-input model. Default: a
            column named like each input.
        output_columns: ``{output_name: column}`` or a list in output order (default: output names).
        num_gpus: GPUs per actor, passed to Ray for GPU clusters.
        num_cpus: CPUs each actor reserves (Ray's default is 1); lower it when actors would take
            every CPU and leave none for the tasks that produce their input blocks.
        model_path: Read the model from this path on shared storage instead of shipping its bytes
            through the object store (for large models).

    Raises:
        InputError: A missing column, a column whose first row has the wrong shape or dtype, or
            an output column that already exists; raised on the driver before the job starts.

    Row order is preserved (``preserve_order`` is set on the returned dataset's own context).
    """
    ray = require("ray", purpose="Scoring on Ray Data", extra="ray")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}: expected a positive int.")
    plan = _batch.plan(artifact.model, dataset.schema().names, input_columns, output_columns)
    first = dataset.take_batch(1, batch_format="numpy")
    _batch.feeds(plan, first)  # a wrong shape or dtype fails here, on the driver
    source: Any = str(model_path) if model_path is not None else [ray.put(artifact.model.SerializeToString())]
    scored = dataset.map_batches(
        _Predictor,
        fn_constructor_kwargs={"source": source, "plan": plan, "providers": providers, "strict": strict},
        batch_size=batch_size,
        concurrency=concurrency,
        batch_format="numpy",
        num_gpus=num_gpus or 0,
        **({"num_cpus": num_cpus} if num_cpus is not None else {}),
    )
    # Each Dataset executes with its own copy of the DataContext: keep this one's rows in order
    # without touching the user's global settings.
    scored.context.execution_options.preserve_order = True
    return scored


class _Predictor:
    """One Ray actor: one session, many batches."""

    def __init__(self, source: Any, plan: _batch.Plan, providers: Any, strict: bool) -> None:
        import ray

        model = source if isinstance(source, str) else ray.get(source[0])
        self.session = Session(model, providers, strict=strict)
        self.plan = plan

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        outputs = self.session.run(_batch.feeds(self.plan, batch))
        batch.update(_batch.columns(self.plan, outputs))
        return batch
