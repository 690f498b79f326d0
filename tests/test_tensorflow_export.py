"""Exporting real TensorFlow and Keras models (kept in their own module: TensorFlow imports in ~2 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.parity import assert_parity

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

import onnxbridge as ob  # noqa: E402

RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.random(shape, dtype=np.float32)


def _dims(art: ob.Artifact, name: str) -> list[int | str]:
    values = {v.name: v for v in [*art.model.graph.input, *art.model.graph.output]}
    return [d.dim_param or d.dim_value for d in values[name].type.tensor_type.shape.dim]


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])


def _cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def _two_in_two_out() -> keras.Model:
    keras.utils.set_random_seed(0)
    features, extra = keras.Input((8,), name="features"), keras.Input((4,), name="extra")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([features, extra]))
    outputs = {"score": keras.layers.Dense(1)(hidden), "probs": keras.layers.Dense(3, activation="softmax")(hidden)}
    return keras.Model([features, extra], outputs)


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_keras3_sequential_mlp_keeps_its_dynamic_batch_and_validates():
    art = ob.export(_mlp(), _x(4, 8))
    assert art.framework == "tensorflow"
    assert "Keras 3" in art.exporter
    assert _dims(art, "input") == ["batch", 8]
    assert _dims(art, "output") == ["batch", 3]
    report = art.validate()
    assert {c.case for c in report.comparisons} == {"sample", "batch=1", "batch=6"}


def test_dynamic_axes_given_explicitly_override_the_models_own():
    art = ob.export(_mlp(), _x(4, 8), dynamic_axes={})
    assert _dims(art, "input") == [4, 8]
    assert art.dynamic_axes == {}


def test_functional_model_with_two_inputs_and_dict_outputs():
    sample = {"features": _x(2, 8), "extra": _x(2, 4)}
    art = ob.export(_two_in_two_out(), sample, dynamic_axes="batch")
    assert art.input_names == ["features", "extra"]
    assert art.output_names == ["probs", "score"]  # dict outputs keep their keys
    assert_parity(art.validate())
    out = art.session().run({"features": _x(5, 8), "extra": _x(5, 4)})
    assert out["probs"].shape == (5, 3)


def test_subclassed_model_exports_from_a_sample():
    art = ob.export(Subclassed(), _x(3, 5), dynamic_axes="batch")
    assert art.input_names == ["input"]
    assert art.output_names == ["output"]
    assert_parity(art.validate())


def test_cnn_in_nhwc_validates_across_batch_sizes():
    art = ob.export(_cnn(), _x(1, 8, 8, 1))
    report = art.validate()
    assert {c.case for c in report.comparisons} == {"sample", "batch=3"}


def test_lstm_with_dynamic_batch_and_time():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(8), keras.layers.Dense(1)])
    art = ob.export(model, _x(2, 6, 4))
    assert _dims(art, "input") == ["batch", "input_dim1", 4]
    report = art.validate()
    assert {"input_dim1=1", "input_dim1=8", "batch=1", "batch=4"} <= {c.case for c in report.comparisons}


def test_tf_function_without_signature_uses_argument_names():
    fn = tf.function(lambda x, y: {"sum": x + y, "prod": x * y})
    art = ob.export(fn, (_x(2, 3), _x(2, 3)), dynamic_axes="batch")
    assert art.input_names == ["x", "y"]
    assert art.output_names == ["prod", "sum"]
    assert_parity(art.validate())


def test_tf_function_with_its_own_signature_keeps_its_names_and_none_dims():
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="values")])
    def double(values):
        return values * 2.0

    art = ob.export(double, _x(2, 3))
    assert art.input_names == ["values"]
    assert _dims(art, "values") == ["batch", 3]
    assert_parity(art.validate())


def test_tf_module_with_call():
    class Scale(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.constant([[1.0, 2.0], [3.0, 4.0]]))

        def __call__(self, x):
            return tf.matmul(x, self.w)

    art = ob.export(Scale(), _x(3, 2), dynamic_axes="batch")
    np.testing.assert_allclose(art.session().run(np.eye(2, dtype=np.float32))["output"], [[1, 2], [3, 4]])
    assert_parity(art.validate())


def test_saved_model_directory_and_signature(tmp_path):
    model = _two_in_two_out()
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    sample = {"features": _x(2, 8), "extra": _x(2, 4)}
    art = ob.export(str(tmp_path / "saved"), sample)
    assert "SavedModel signature 'serving_default'" in art.exporter
    assert set(art.input_names) == {"features", "extra"}
    assert_parity(art.validate())
    with pytest.raises(ob.InputError, match=r"no signature 'nope'.*serving_default"):
        ob.export(str(tmp_path / "saved"), sample, signature="nope")


def test_legacy_tf_keras_model():
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(4, activation="relu", input_shape=(3,)), tf_keras.layers.Dense(2)]
    )
    art = ob.export(model, _x(2, 3))
    assert "tf_keras" in art.exporter
    assert "tf_keras" in art.framework_version
    assert_parity(art.validate())


def test_large_model_path_works_with_numpy_2():
    # tf2onnx 1.17's external-data path calls np.product (gone in NumPy 2); onnxbridge bridges it.
    art = ob.export(_cnn(), _x(2, 8, 8, 1), large_model=True)
    assert any("large-model" in n for n in art.export_notes)
    assert_parity(art.validate())
    assert not hasattr(np, "product")  # the alias does not leak


def test_save_and_load_round_trip(tmp_path):
    art = ob.export(_mlp(), _x(2, 8))
    loaded = ob.load(art.save(tmp_path / "mlp.onnx"))
    assert loaded.framework == "tensorflow"
    assert loaded.validate().comparisons[0].passed


# -- bad input ----------------------------------------------------------------------------------
def test_never_built_keras_model_without_sample():
    with pytest.raises(ob.InputError, match="never built"):
        ob.export(keras.Sequential([keras.layers.Dense(3)]))


def test_sample_not_matching_the_model_inputs():
    with pytest.raises(ob.InputError, match=r"has shape \(2, 5\), but the Keras 3 model declares \(None, 8\)"):
        ob.export(_mlp(), _x(2, 5))
    with pytest.raises(ob.InputError, match="takes 2"):
        ob.export(_two_in_two_out(), _x(2, 8))
    with pytest.raises(ob.InputError, match="does not take"):
        ob.export(_two_in_two_out(), {"features": _x(2, 8), "other": _x(2, 4)})


def test_missing_saved_model_path(tmp_path):
    with pytest.raises(ob.UnsupportedModelError, match="SavedModel directory"):
        ob.export(str(tmp_path / "missing"))
    with pytest.raises(ob.ModelFileError, match="does not exist"):
        ob.export(str(tmp_path / "missing"), framework="tensorflow")
    with pytest.raises(ob.ModelFileError, match="not a SavedModel"):
        ob.export(str(tmp_path), framework="tensorflow")


def test_unconvertible_operation_names_the_op_and_suggests_custom_ops():
    fn = tf.function(lambda x: tf.math.igamma(x, x))
    with pytest.raises(ob.ExportError, match=r"Igamma.*opset 18.*custom_ops"):
        ob.export(fn, _x(3))


@pytest.mark.slow
def test_keras_model_on_the_torch_backend_is_pointed_to_the_torch_adapter():
    pytest.importorskip("torch")
    code = textwrap.dedent(
        """
        import os
        os.environ["KERAS_BACKEND"] = "torch"
        import keras, numpy as np, onnxbridge as ob
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        try:
            ob.export(model, np.ones((2, 4), np.float32))
        except ob.UnsupportedModelError as err:
            print("refused:", err)
        art = ob.export(model, np.ones((2, 4), np.float32), framework="torch", dynamic_axes="batch")
        print("torch route validates:", art.validate().ok)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "'torch' backend" in out.stdout
    assert "framework='torch'" in out.stdout
    assert "torch route validates: True" in out.stdout


def test_export_without_sample_uses_declared_inputs_and_says_parity_needs_samples():
    art = ob.export(_mlp())
    assert _dims(art, "input") == ["batch", 8]
    report = art.validate()
    parity = next(c for c in report.checks if c.name == "numeric parity")
    assert parity.passed is None
    assert "no sample" in parity.detail
    assert art.validate(samples=[_x(3, 8)]).comparisons[0].passed


@pytest.mark.slow
@pytest.mark.parametrize("application", ["EfficientNetB0", "ConvNeXtTiny"])
def test_keras_applications_that_tf2onnx_alone_gets_wrong_export_and_validate(application):
    # EfficientNet's Normalization constants must stay initializers, not become inputs;
    # ConvNeXt needs Erfc (exact GELU) and its grouped convolutions run under XLA in Keras.
    model = getattr(keras.applications, application)(weights=None, input_shape=(32, 32, 3))
    sample = _x(2, 32, 32, 3) * 255
    art = ob.export(model, sample, dynamic_axes="batch")
    assert [i.name for i in art.model.graph.input] == art.input_names
    assert len(art.input_names) == 1
    ops = {n.op_type for n in art.model.graph.node}
    assert "StatefulPartitionedCall" not in ops
    assert "Erfc" not in ops
    report = art.validate(samples=[_x(3, 32, 32, 3) * 255])
    assert report.ok, report
    if application == "ConvNeXtTiny":
        assert "Erf" in ops
        assert any(
            n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
            for n in art.model.graph.node
        )


def test_erfc_converts_as_one_minus_erf():
    fn = tf.function(lambda x: tf.math.erfc(x))
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    art = ob.export(fn, x)
    np.testing.assert_allclose(art.session().run(x)[art.output_names[0]], tf.math.erfc(x).numpy(), atol=1e-6)
