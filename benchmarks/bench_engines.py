"""Engines benchmark: rows per second scoring 10,000 rows on Ray Data and Spark vs a plain loop.

Run with ``make bench``. Local engines on this machine (2 cores), 1 and 2 workers, the same
artifact and rows; medians of 3 runs each. Shows the engines' overhead and scaling on a small
machine, not cluster performance. Not part of the tests.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from _timing import per_call, table

from tests import engines

warnings.filterwarnings("ignore")
FEATURES = [f"f{i}" for i in range(64)]


def _median_seconds(job, runs: int = 3) -> float:
    return statistics.median(per_call(job, runs, warmup=0))


def _ray_job(obray, ds, art, columns, workers: int) -> None:
    obray.predict(ds, art, input_columns=columns, batch_size=1000, concurrency=workers).materialize()


def _spark_job(obspark, frame, art, columns) -> None:
    obspark.predict(frame, art, input_columns=columns, batch_size=1000).select("prediction").count()


def main() -> None:
    """Print the engines table."""
    flat, images = engines.digits_rows()
    cases = {"RandomForest (30 trees)": (engines.forest(), flat), "digits CNN": (engines.cnn(), images)}
    rows = []
    import ray

    import onnxbridge.ray as obray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    import onnxbridge.spark as obspark

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        for name, (art, data) in cases.items():
            session = art.session(providers=["cpu"], threads=1)

            def loop(s=session, d=data):
                for i in range(0, len(d), 1000):
                    s.run(d[i : i + 1000])

            base = _median_seconds(loop)
            rows.append([name, "plain loop, 1 process", f"{len(data) / base:,.0f}", "1.00x"])
            if data.ndim == 2:
                ds = ray.data.from_pandas(pd.DataFrame(data, columns=FEATURES))
                columns = FEATURES
                frame = spark.createDataFrame(pd.DataFrame(data, columns=FEATURES)).cache()
                spark_columns = FEATURES
            else:
                ds = ray.data.from_numpy(data).repartition(4)
                columns = {"input": "data"}
                frame = spark.createDataFrame(pd.DataFrame({"pixels": list(data.reshape(len(data), -1))})).cache()
                spark_columns = {"input": "pixels"}
            ds = ds.materialize()
            frame.count()
            for workers in (1, 2):
                seconds = _median_seconds(functools.partial(_ray_job, obray, ds, art, columns, workers))
                rows.append(
                    [name, f"Ray Data, {workers} actor(s)", f"{len(data) / seconds:,.0f}", f"{base / seconds:.2f}x"]
                )
            for workers in (1, 2):
                part = frame.repartition(workers)
                seconds = _median_seconds(functools.partial(_spark_job, obspark, part, art, spark_columns))
                rows.append(
                    [
                        name,
                        f"Spark local[2], {workers} partition(s)",
                        f"{len(data) / seconds:,.0f}",
                        f"{base / seconds:.2f}x",
                    ]
                )
    finally:
        spark.stop()
        ray.shutdown()
    print("## Scoring 10,000 rows: engines vs a plain loop over Session.run (2-core machine)\n")
    print(table(["model", "how", "rows/s", "vs plain loop"], rows))
    print(f"\nmeasured {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
