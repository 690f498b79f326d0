"""Session.run with what users pass: every call gives correct outputs or an OnnxBridgeError, never a silent change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxbridge as ob

pytestmark = pytest.mark.core


def _model(elem: int, dtype: type) -> ob.Artifact:
    """y = x + 1 over a [batch, 3] input of the given type."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", elem, ["batch", 3])],
        [helper.make_tensor_value_info("y", elem, ["batch", 3])],
        [numpy_helper.from_array(np.ones(1, dtype), "one")],
    )
    return ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.fixture(scope="module")
def float_session():
    return _model(TensorProto.FLOAT, np.float32).session(providers=["cpu"])


@pytest.fixture(scope="module")
def int32_session():
    return _model(TensorProto.INT32, np.int32).session(providers=["cpu"])


_dtypes = st.sampled_from(
    [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex64]
)
_layouts = st.sampled_from(["c", "fortran", "strided", "broadcast"])
_forms = st.sampled_from(["dict", "list", "array"])


def _arrange(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        return np.repeat(x, 2, axis=-1)[..., ::2]
    if layout == "broadcast" and x.ndim == 2 and len(x):
        return np.broadcast_to(x[:1], x.shape)
    return x


@settings(max_examples=200, deadline=None)
@given(
    dtype=_dtypes,
    rows=st.integers(0, 4),
    cols=st.sampled_from([3, 3, 3, 2]),
    rank=st.sampled_from([2, 2, 2, 1, 3]),
    layout=_layouts,
    form=_forms,
    scale=st.sampled_from([1.0, 1e3, 1e40]),
)
def test_run_returns_correct_outputs_or_an_onnxbridge_error(
    float_session, dtype, rows, cols, rank, layout, form, scale
):
    shape = {1: (cols,), 2: (rows, cols), 3: (rows, cols, 1)}[rank]
    base = np.random.default_rng(rows).uniform(-1, 1, size=shape) * (scale if dtype == np.float64 else 1.0)
    x = _arrange(base.astype(dtype), layout)
    inputs = {"dict": {"x": x}, "list": [x], "array": x}[form]
    overflows = dtype == np.float64 and scale > 1e38 and rows > 0
    valid = rank == 2 and cols == 3 and np.dtype(dtype).kind == "f" and not overflows
    if not valid:  # wrong rank or size, another kind of number, or beyond float32: a typed error
        with pytest.raises(ob.OnnxBridgeError):
            float_session.run(inputs)
        return
    y = float_session.run(inputs)["y"]
    want = x.astype(np.float64) + 1
    np.testing.assert_allclose(y, want, rtol=1e-2 if dtype == np.float16 else 1e-6, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=3))
def test_float64_and_float32_inputs_give_identical_outputs(float_session, values):
    x32 = np.array([values], np.float32)
    np.testing.assert_array_equal(
        float_session.run({"x": x32.astype(np.float64)})["y"], float_session.run({"x": x32})["y"]
    )


def test_int64_values_that_do_not_fit_int32_are_refused_not_wrapped(int32_session):
    with pytest.raises(ob.InputError, match=r"'x' holds 2147483648.*int32 \(range -2147483648 to 2147483647\)"):
        int32_session.run({"x": np.array([[1, 2, 2**31]], np.int64)})
    assert int32_session.run({"x": np.array([[1, 2, 2**31 - 2]], np.int64)})["y"].tolist() == [[2, 3, 2**31 - 1]]


def test_float64_values_beyond_float32_are_refused_not_turned_into_inf(float_session):
    with pytest.raises(ob.InputError, match=r"beyond the largest float32.*inf"):
        float_session.run({"x": np.array([[1.0, 1e39, 0.0]])})
    assert np.isinf(float_session.run({"x": np.array([[np.inf, 0.0, 1.0]])})["y"][0, 0])  # inf given stays inf


def test_shape_is_checked_before_a_huge_broadcast_view_is_cast(float_session):
    view = np.broadcast_to(np.zeros((1, 4), np.float64), (2**31, 4))  # no memory, 64 GiB once cast
    with pytest.raises(ob.InputError, match="axis 1 must be 3"):
        float_session.run({"x": view})


def test_torch_tensors_of_every_kind_run_or_are_refused_with_input_error(float_session):
    torch = pytest.importorskip("torch")
    dense = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    expected = dense.numpy() + 1
    np.testing.assert_array_equal(float_session.run({"x": dense.to_sparse()})["y"], expected)
    np.testing.assert_array_equal(float_session.run({"x": dense.to_sparse_csr()})["y"], expected)
    np.testing.assert_array_equal(float_session.run({"x": dense.T.contiguous().T})["y"], expected)
    with pytest.raises(ob.InputError, match="meta tensor"):
        float_session.run({"x": torch.empty((2, 3), device="meta")})
    with pytest.raises(ob.InputError, match="complex64"):
        float_session.run({"x": torch.ones((2, 3), dtype=torch.complex64).conj()})
    with pytest.raises(ob.InputError, match="bfloat16"):
        float_session.run({"x": dense.to(torch.bfloat16)})


_torch_kinds = st.sampled_from(
    ["dense", "transposed", "expanded", "sliced", "sparse_coo", "sparse_csr", "grad", "meta"]
)
_torch_dtypes = st.sampled_from(["float32", "float64", "float16", "bfloat16", "int64", "complex64", "bool"])


@settings(max_examples=150, deadline=None)
@given(kind=_torch_kinds, dtype=_torch_dtypes, rows=st.integers(1, 4), form=_forms)
def test_torch_tensors_run_correctly_or_raise_an_onnxbridge_error(float_session, kind, dtype, rows, form):
    torch = pytest.importorskip("torch")
    base = torch.from_numpy(np.random.default_rng(rows).uniform(-4, 4, size=(rows, 3))).to(getattr(torch, dtype))
    x = {
        "dense": lambda: base,
        "transposed": lambda: base.T.contiguous().T,  # same values, column-major strides
        "expanded": lambda: base[:1].expand(rows, 3),
        "sliced": lambda: torch.repeat_interleave(base, 2, dim=1)[:, ::2],
        "sparse_coo": lambda: base.to_sparse(),
        "sparse_csr": lambda: base.to_sparse_csr(),
        "grad": lambda: base.clone().requires_grad_(base.is_floating_point() or base.is_complex()),
        "meta": lambda: base.to("meta"),
    }[kind]()
    inputs = {"dict": {"x": x}, "list": [x], "array": x}[form]
    valid = dtype in ("float32", "float64", "float16") and kind != "meta"
    if not valid:  # another kind of number, bfloat16 (numpy has none), or no data at all
        with pytest.raises(ob.OnnxBridgeError):
            float_session.run(inputs)
        return
    expected = (
        x.detach().to_dense().double().numpy() + 1 if x.layout != torch.strided else x.detach().double().numpy() + 1
    )
    np.testing.assert_allclose(float_session.run(inputs)["y"], expected, rtol=1e-6, atol=1e-6)
