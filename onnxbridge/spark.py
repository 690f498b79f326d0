"""Batch inference of an artifact on Spark, on Spark's own batch-inference support.

``onnxbridge.spark.predict_udf(artifact)`` returns a function for ``df.withColumn`` /
``df.select`` built on ``pyspark.ml.functions.predict_batch_udf``: the model is broadcast once
and each executor's Python worker keeps one onnxruntime session. ``onnxbridge.spark.predict``
checks the column mapping against the DataFrame on the driver first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxbridge._artifact import Artifact
from onnxbridge.core._deps import require
from onnxbridge.core._errors import InputError
from onnxbridge.graph import _graph
from onnxbridge.running import _batch
from onnxbridge.running._session import Session

__all__ = ["predict", "predict_udf"]

_SPARK_TYPES = {
    "float32": "FloatType",
    "float64": "DoubleType",
    "int64": "LongType",
    "int32": "IntegerType",
    "bool": "BooleanType",
    "object": "StringType",
}


def predict_udf(
    artifact: Artifact,
    *,
    batch_size: int = 1024,
    providers: Sequence[str] | str | None = None,
    strict: bool = False,
    return_type: Any = None,
) -> Any:
    """A Spark column function that runs the model, for ``df.withColumn(name, udf(*columns))``.

    Call it with one column per model input, in input order. Array columns are reshaped to the
    input's declared shape; for a tabular model, combine the feature columns with
    ``pyspark.sql.functions.array(*features)`` (or use :func:`predict`, which does).

    Args:
        artifact: The model to run.
        batch_size: Rows per onnxruntime call.
        providers: Execution providers on every executor, as for :meth:`Artifact.session`.
        strict: Fail instead of falling back when a provider is missing on an executor.
        return_type: Spark type of the result; default: the output's scalar type, an array of it
            for multi-dimensional outputs, or a struct with one field per output.
    """
    pyspark = require("pyspark", purpose="Scoring on Spark", extra="spark")
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        raise InputError("predict_udf needs an active SparkSession; create one first (SparkSession.builder...).")
    names = _input_plan(artifact)
    model = session.sparkContext.broadcast(artifact.model.SerializeToString())
    outputs = [o.name for o in artifact.model.graph.output]
    result_type = return_type if return_type is not None else _return_type(pyspark, artifact)

    def make_predict_fn() -> Any:
        runner = Session(model.value, providers, strict=strict)  # once per Python worker
        plan = names

        def predict(*arrays: np.ndarray) -> Any:
            batch = {f"c{i}": a for i, a in enumerate(arrays)}
            values = runner.run(_batch.feeds(plan, batch))
            flat = _batch.columns(plan, values)
            if len(outputs) == 1:
                return flat[outputs[0]]
            return {name: flat[name] for name in outputs}

        return _with_arity(len(plan.inputs), predict)

    # Per-row shapes of array columns (Spark hands them over flat); scalar inputs need none.
    shapes = [[d if isinstance(d, int) else -1 for d in shape[1:]] or None for _, _, _, shape in names.inputs]
    return predict_batch_udf(
        make_predict_fn, return_type=result_type, batch_size=batch_size, input_tensor_shapes=shapes
    )


def predict(
    df: Any,
    artifact: Artifact,
    *,
    input_columns: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
    output_column: str = "prediction",
    batch_size: int = 1024,
    providers: Sequence[str] | str | None = None,
    strict: bool = False,
) -> Any:
    """``df`` with the model's outputs in ``output_column``, after checking columns on the driver.

    Raises:
        InputError: A missing column, a first row of the wrong shape or dtype, or an output column
            that already exists; raised before any Spark job runs the model.
    """
    plan = _batch.plan(
        artifact.model,
        df.columns,
        input_columns,
        {o.name: output_column for o in artifact.model.graph.output} if len(artifact.model.graph.output) == 1 else None,
    )
    if output_column in df.columns:
        raise InputError(f"Column {output_column!r} already exists; choose another output_column.")
    first = df.select(*plan.columns).limit(1).toPandas()
    if len(first):
        _batch.feeds(plan, {c: first[c].to_numpy() for c in plan.columns})
    from pyspark.sql import functions

    udf = predict_udf(artifact, batch_size=batch_size, providers=providers, strict=strict)
    arguments = [functions.array(*cols) if len(cols) > 1 else functions.col(cols[0]) for _, cols, _, _ in plan.inputs]
    return df.withColumn(output_column, udf(*arguments))


def _input_plan(artifact: Artifact) -> _batch.Plan:
    """A plan whose columns are positional (c0, c1, ...): one column per input, as Spark passes them."""
    from onnxbridge.graph import _graph

    names = [v.name for v in _graph.inputs(artifact.model)]
    positional = {name: f"c{i}" for i, name in enumerate(names)}
    return _batch.plan(artifact.model, list(positional.values()), positional, None)


def _with_arity(count: int, predict: Any) -> Any:
    """predict_batch_udf counts the predict function's parameters: give it one per input."""
    if count < 1 or count > 8:
        raise InputError(f"predict_udf supports models with 1 to 8 inputs; this one has {count}.")
    params = ", ".join(f"x{i}" for i in range(count))
    namespace: dict[str, Any] = {"predict": predict}
    exec(f"def bound({params}):\n    return predict({params})", namespace)
    return namespace["bound"]


def _return_type(pyspark: Any, artifact: Artifact) -> Any:
    from pyspark.sql import types

    def spark_type(value: Any) -> Any:
        t = value.type.tensor_type
        dtype = _graph.value_dtype(value)
        scalar = getattr(types, _SPARK_TYPES.get(dtype.name if dtype is not None else "", "DoubleType"))()
        per_row = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim][1:]
        return scalar if not per_row or per_row == [1] else types.ArrayType(scalar)

    outputs = list(artifact.model.graph.output)
    if len(outputs) == 1:
        return spark_type(outputs[0])
    return types.StructType([types.StructField(o.name, spark_type(o)) for o in outputs])
