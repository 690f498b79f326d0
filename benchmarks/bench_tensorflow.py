"""TensorFlow benchmark: onnxruntime through onnxbridge vs the Keras model itself, batch 1.

Run with ``make bench`` (or ``python benchmarks/bench_tensorflow.py``). Ratios of two
things measured side by side in this process, medians over interleaved rounds. The
fair baseline is the model called through a ``tf.function`` (graph mode, what a
serving loop would use); ``model.predict`` is shown for reference, since many users
call it for single predictions. Not part of the tests.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
from _timing import compare, table

import onnxbridge as ob

warnings.filterwarnings("ignore")
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def _models() -> dict[str, keras.Model]:
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    cnn = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    return {"Keras MLP 8-16-3": mlp, "Keras digits CNN": cnn}


def main() -> None:
    """Print the TensorFlow benchmark table."""
    rows = []
    for name, model in _models().items():
        x = np.random.default_rng(0).random((1, *model.inputs[0].shape[1:]), dtype=np.float32)
        art = ob.export(model, x)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = art.session(providers=["cpu"], threads=1, options=options)
        feeds = {art.input_names[0]: x}
        graph = tf.function(lambda t, m=model: m(t, training=False))
        tensor = tf.constant(x)
        via_function = compare(lambda g=graph, t=tensor: g(t), lambda s=sess, f=feeds: s.run(f), calls=300)
        via_predict = compare(
            lambda m=model, a=x: m.predict(a, verbose=0), lambda s=sess, f=feeds: s.run(f), rounds=7, calls=20
        )
        rows.append(
            [
                name,
                f"{via_function.a_seconds * 1e6:.0f} us",
                f"{via_predict.a_seconds * 1e6:.0f} us",
                f"{via_function.b_seconds * 1e6:.0f} us",
                f"{via_function.ratio:.1f}x",
                f"{via_predict.ratio:.0f}x",
            ]
        )
    print("## onnxruntime through onnxbridge vs the Keras model, batch 1, 1 thread (target: >= 2x vs tf.function)\n")
    print(
        table(
            ["model", "tf.function", "model.predict", "onnxbridge session", "vs tf.function", "vs predict"],
            rows,
        )
    )
    print(
        f"\ntensorflow {tf.__version__}, keras {keras.__version__}, onnxruntime {ort.__version__}, "
        f"measured {time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    main()
