"""Sessions: provider fallback told honestly, inputs checked before onnxruntime sees them."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxbridge as ob
from tests.onnx_models import unary

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def art() -> ob.Artifact:
    """y = x @ w (x: [batch, 3] float32), plus an int64 'ids' input: z = ids + 1."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    z = helper.make_tensor_value_info("z", TensorProto.INT64, ["batch"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32).tolist())
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["ids", "one"], ["z"])]
    graph = helper.make_graph(nodes, "g", [x, ids], [y, z], initializer=[w, one])
    return ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


X = np.ones((2, 3), dtype=np.float32)
IDS = np.array([1, 2], dtype=np.int64)


def test_default_providers_never_include_azure(art):
    sess = art.session()
    assert "AzureExecutionProvider" not in sess.providers
    assert sess.providers[-1] == "CPUExecutionProvider"


def test_unavailable_cuda_falls_back_to_cpu_with_one_warning_naming_it(art):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = art.session(providers=["cuda", "cpu"])
    fallbacks = [w for w in caught if issubclass(w.category, ob.ProviderFallbackWarning)]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is really available here")
    assert len(fallbacks) == 1
    assert "CUDAExecutionProvider" in str(fallbacks[0].message)
    assert "not available" in str(fallbacks[0].message)
    assert sess.providers == ("CPUExecutionProvider",)  # read back from onnxruntime
    assert sess.skipped_providers[0][0] == "CUDAExecutionProvider"


def test_only_unavailable_providers_requested_still_runs_on_cpu(art):
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is really available here")
    with pytest.warns(ob.ProviderFallbackWarning, match="TensorrtExecutionProvider"):
        sess = art.session(providers=["tensorrt"])
    assert sess.providers == ("CPUExecutionProvider",)
    assert sess.run({"x": X, "ids": IDS})["y"].shape == (2, 2)


def test_strict_raises_provider_error_instead_of_falling_back(art):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is really available here")
    with pytest.raises(ob.ProviderError, match="CUDAExecutionProvider"):
        art.session(providers=["cuda", "cpu"], strict=True)


def test_unknown_provider_name_is_an_error_with_a_suggestion(art):
    with pytest.raises(ob.ProviderError, match="Did you mean 'cuda'"):
        art.session(providers=["cdua"])


def test_full_names_aliases_and_provider_options_are_accepted(art):
    sess = art.session(
        providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})], strict=True, threads=1
    )
    assert sess.providers == ("CPUExecutionProvider",)
    assert art.session(providers="CPU", strict=True).providers == ("CPUExecutionProvider",)


def test_run_accepts_dict_list_and_call_forms_with_identical_results(art):
    sess = art.session(providers=["cpu"])
    by_name = sess.run({"x": X, "ids": IDS})
    by_order = sess.run([X, IDS])
    by_call = sess({"x": X, "ids": IDS})
    np.testing.assert_array_equal(by_name["y"], by_order["y"])
    np.testing.assert_array_equal(by_name["z"], by_call["z"])
    np.testing.assert_array_equal(by_name["y"], X @ np.arange(6, dtype=np.float32).reshape(3, 2))


def test_same_kind_dtypes_are_cast(art):
    out = art.session(providers=["cpu"]).run({"x": X.astype(np.float64), "ids": IDS.astype(np.int32)})
    assert out["y"].dtype == np.float32
    assert out["z"].tolist() == [2, 3]


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    art = ob.export(unary("Neg", ["n"]))
    assert art.session().run(torch.arange(3, dtype=torch.float32))["y"].tolist() == [0.0, -1.0, -2.0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": X}, "missing 'ids'"),
        ({"x": X, "ids": IDS, "extra": X}, "unknown 'extra'"),
        ({"x": X[0], "ids": IDS}, "'x' has rank 1.*expects rank 2"),
        ({"x": np.ones((2, 4), np.float32), "ids": IDS}, r"axis 1 must be 3"),
        ({"x": X.astype(np.int64), "ids": IDS}, "dtype int64, but the model expects float32"),
        ([X], "Got 1 positional inputs, but the model takes 2"),
        (X, "single ndarray was passed, but the model takes 2 inputs"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_input(art, inputs, message):
    with pytest.raises(ob.InputError, match=message):
        art.session(providers=["cpu"]).run(inputs)


def test_onnxruntime_failure_while_running_is_an_inference_error():
    # Reshape of a symbolic-length vector to a fixed [2, 2]: only sizes of 4 elements can run.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 2])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], initializer=[shape])
    art = ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    sess = art.session(providers=["cpu"])
    assert sess.run(np.ones(4, np.float32))["y"].shape == (2, 2)
    with pytest.raises(ob.InferenceError, match="onnxruntime failed while running"):
        sess.run(np.ones(3, np.float32))


def test_session_is_safe_to_call_from_several_threads(art):
    sess = art.session(providers=["cpu"])
    expected = sess.run({"x": X, "ids": IDS})["y"]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for _ in range(50):
                np.testing.assert_array_equal(sess.run({"x": X, "ids": IDS})["y"], expected)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_bad_thread_count_is_refused(art):
    with pytest.raises(ob.InputError, match="threads"):
        art.session(threads=-1)
