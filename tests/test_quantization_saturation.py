"""U8S8 saturation on x86 CPUs without VNNI: the MatMuls that can clip get 7-bit weights, and only they."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from onnxbridge.quantize import _saturation  # noqa: E402
from onnxbridge.quantize._dynamic import DynamicInt8  # noqa: E402

K, N = 64, 16
RNG = np.random.default_rng(0)
BIG = RNG.normal(size=(K, N)).astype(np.float32)  # int8 pairs reach 127 + more: can clip
SMALL = np.tile(np.array([[0.2], [0.0]], np.float32), (N // 2, N))  # pairs of 127 and 0: never past 128


def _two_matmuls() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "big_w"], ["h"], name="big"),
        helper.make_node("MatMul", ["h", "small_w"], ["y"], name="small"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(BIG, "big_w"), numpy_helper.from_array(SMALL, "small_w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_cpu_check_reads_vnni_from_the_flags():
    assert _saturation.cpu_saturates_u8s8("flags\t: fpu sse2 avx avx2 fma\n")
    assert not _saturation.cpu_saturates_u8s8("flags\t: fpu avx2 avx512f avx512_vnni\n")
    assert not _saturation.cpu_saturates_u8s8("flags\t: fpu avx2 avx_vnni\n")
    assert not _saturation.cpu_saturates_u8s8("flags\t: fpu sse2\n")  # no AVX2: another kernel


def test_a_weight_pair_past_128_in_int8_is_found_and_one_under_it_is_not():
    assert _saturation.pair_limit_exceeded(BIG)
    assert not _saturation.pair_limit_exceeded(SMALL)


def _int8_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The quantized weight matrices (not their zero points), by initializer name."""
    return {
        i.name: numpy_helper.to_array(i)
        for i in model.graph.initializer
        if i.data_type == TensorProto.INT8 and len(i.dims) == 2
    }


def test_only_the_matmuls_that_can_clip_get_7_bit_weights_where_the_cpu_saturates():
    recipe = DynamicInt8(saturation=True)
    quantized, _ = recipe(_two_matmuls(), [])
    assert recipe.reduced == ["big"]
    assert recipe.settings([])["7-bit weights (U8S8 saturation on this CPU, no VNNI)"] == ["big"]
    weights = _int8_weights(quantized)
    big = next(v for k, v in weights.items() if k.startswith("big_w"))
    small = next(v for k, v in weights.items() if k.startswith("small_w"))
    assert np.abs(big).max() <= 64  # 7 bits
    assert np.abs(small).max() == 127  # 8 bits kept
    plain = DynamicInt8(saturation=False)
    quantized, _ = plain(_two_matmuls(), [])
    assert plain.reduced == []
    assert all(np.abs(v).max() == 127 for v in _int8_weights(quantized).values())


def _u8s8(activations: np.ndarray, weights: np.ndarray, saturate: bool) -> np.ndarray:
    """The integer product as AVX2's vpmaddubsw forms it: pairs along K summed into int16 (clipped if asked)."""
    pairs = activations[:, 0::2, None] * weights[None, 0::2] + activations[:, 1::2, None] * weights[None, 1::2]
    if saturate:
        pairs = np.clip(pairs, -32768, 32767)
    return pairs.sum(axis=1)


@pytest.mark.parametrize("bits", [8, 7])
def test_measured_on_weights_that_clip_7_bits_undo_the_saturation(bits):
    """Simulated (this machine has VNNI): the clipped 8-bit product is far off, the 7-bit one is not clipped."""
    activations = RNG.integers(200, 256, size=(32, K))  # large uint8 activations, as after a ReLU's peak
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(BIG).max(axis=0) / qmax
    weights = np.clip(np.round(BIG / scale), -qmax, qmax).astype(np.int64)
    exact, clipped = _u8s8(activations, weights, False), _u8s8(activations, weights, True)
    if bits == 8:
        assert np.abs(clipped - exact).max() > 0  # saturation happens with 8-bit weights
    else:
        assert (clipped == exact).all()  # and never with 7-bit ones
