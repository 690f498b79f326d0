"""U8S8 saturation: int8 MatMuls that can overflow on x86 CPUs without VNNI, found before quantizing.

onnxruntime's dynamic int8 MatMul multiplies uint8 activations by int8 weights (U8S8). On x86
CPUs without VNNI its AVX2 kernel adds each pair of products along the inner axis into an int16
(``vpmaddubsw``), which saturates at 32767: a pair of weights whose magnitudes sum past
32767 / 255 = 128.5 can clip when the activations beside them are large. onnxruntime's own
remedy is ``reduce_range`` (7-bit weights, whose pairs sum to 126 at most) or uint8 weights; its
docs give them for the whole model. Here only the MatMuls whose quantized weights hold such a
pair get 7-bit weights; the rest keep 8 bits. With VNNI (``vpdpbusd`` adds in int32), on ARM and
where the CPU is unknown, nothing changes.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = ["cpu_saturates_u8s8", "pair_limit_exceeded", "saturating"]

INT16_MAX = 32767
UINT8_MAX = 255
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_saturates_u8s8(cpuinfo: str | None = None) -> bool:
    """Whether this CPU runs onnxruntime's U8S8 kernel with int16 pair sums: x86 with AVX2 and without VNNI.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read when not given); False where it cannot be read.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx2" in flags and not VNNI_FLAGS & set(flags)


def pair_limit_exceeded(weight: np.ndarray) -> bool:
    """Whether per-output-channel int8 ``weight`` (``[K, N]``, as MatMul's B) has a pair along K that can clip."""
    scale = np.abs(weight).max(axis=0) / 127.0
    quantized = np.abs(np.round(weight / np.where(scale > 0, scale, 1.0)))
    if len(quantized) % 2:
        quantized = np.concatenate([quantized, np.zeros((1, quantized.shape[1]))])
    pairs = quantized[0::2] + quantized[1::2]
    return bool((pairs * UINT8_MAX > INT16_MAX).any())


def saturating(model: onnx.ModelProto, nodes: Sequence[str]) -> list[str]:
    """The MatMuls among ``nodes`` with a constant 2-D float weight that has a pair which can clip."""
    from onnx import TensorProto, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2}
    wanted = set(nodes)
    return [
        n.name
        for n in model.graph.node
        if n.name in wanted
        and n.op_type == "MatMul"
        and n.input[1] in initializers
        and pair_limit_exceeded(numpy_helper.to_array(initializers[n.input[1]]))
    ]
