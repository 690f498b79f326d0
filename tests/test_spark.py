"""Batch inference on a real local Spark session (local[2])."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

pyspark = pytest.importorskip("pyspark")
pytest.importorskip("sklearn")
pytest.importorskip("torch")

import onnxbridge as ob  # noqa: E402
import onnxbridge.spark as obspark  # noqa: E402
from tests import engines  # noqa: E402

pytestmark = pytest.mark.slow  # starts Spark

FEATURES = [f"f{i}" for i in range(64)]


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        if os.environ.get("CI"):
            pytest.fail("Spark needs a Java runtime: apt-get install default-jre-headless")
        pytest.skip("no Java runtime for Spark")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors run this interpreter, with onnxbridge
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("onnxbridge-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data():
    return engines.digits_rows()


def _frame(spark, flat):
    import pandas as pd

    frame = pd.DataFrame(flat, columns=FEATURES)
    frame.insert(0, "row", np.arange(len(frame)))
    return spark.createDataFrame(frame)


def test_random_forest_scores_10000_rows_with_predict_udf(spark, data):
    flat, _ = data
    art = engines.forest()
    from pyspark.sql.functions import array

    udf = obspark.predict_udf(art, batch_size=1000)
    scored = _frame(spark, flat).withColumn("prediction", udf(array(*FEATURES))).orderBy("row").toPandas()
    expected = art.session().run(flat)
    assert len(scored) == engines.ROWS
    labels = np.array([p["label"] for p in scored["prediction"]])
    probabilities = np.array([p["probabilities"] for p in scored["prediction"]])
    np.testing.assert_array_equal(labels, expected["label"])
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-6)


def test_cnn_scores_an_array_column_reshaped_to_the_input(spark, data):
    import pandas as pd

    _, images = data
    art = engines.cnn()
    frame = pd.DataFrame({"row": np.arange(engines.ROWS), "pixels": list(images.reshape(engines.ROWS, 64))})
    df = spark.createDataFrame(frame)
    scored = obspark.predict(df, art, input_columns={"input": "pixels"}, output_column="logits", batch_size=500)
    result = scored.orderBy("row").select("logits").toPandas()
    np.testing.assert_allclose(
        np.stack(result["logits"].to_numpy()), art.session().run(images)["output"], rtol=1e-5, atol=1e-6
    )


def test_bad_column_mappings_fail_on_the_driver(spark, data):
    flat, _ = data
    art = engines.forest()
    df = _frame(spark, flat[:50])
    with pytest.raises(ob.InputError, match=r"Column\(s\) \['pixels'\]"):
        obspark.predict(df, art, input_columns={"input": "pixels"})
    with pytest.raises(ob.InputError, match="10 columns were given"):
        obspark.predict(df, art, input_columns=FEATURES[:10])
    with pytest.raises(ob.InputError, match="already exists"):
        obspark.predict(df, art, input_columns=FEATURES, output_column="f3")
    import pandas as pd

    wrong = spark.createDataFrame(pd.DataFrame({"pixels": list(np.zeros((5, 9), np.float32))}))
    with pytest.raises(ob.InputError, match="Column 'pixels' has rows of shape"):
        obspark.predict(wrong, engines.cnn(), input_columns={"input": "pixels"})
