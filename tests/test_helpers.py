"""The package's small shared helpers: tables, interleaved timing, first lines of errors."""

from __future__ import annotations

import pytest

from onnxbridge.core._errors import first_line
from onnxbridge.core._tables import markdown_table, text_table
from onnxbridge.core._timing import compare

pytestmark = pytest.mark.core


def test_text_table_aligns_columns_and_trims_trailing_space():
    assert text_table(["a", "long header"], [["xyz", "1"], ["q", "22"]]) == [
        "  a    long header",
        "  xyz  1",
        "  q    22",
    ]


def test_markdown_table_has_a_rule_under_the_header():
    assert markdown_table(["k", "v"], [["one", 1]]).splitlines() == ["| k   | v |", "|-----|---|", "| one | 1 |"]


def test_compare_reports_the_slower_side_as_a_ratio_above_one():
    slow, fast = (lambda: sum(range(20_000))), (lambda: None)
    result = compare(slow, fast, rounds=3, calls=20, pause=0)
    assert result.ratio > 5
    assert result.a_seconds > result.b_seconds


def test_first_line_keeps_the_first_non_empty_line_within_the_limit():
    assert first_line(ValueError("\n  boom: x\nstack...")) == "boom: x"
    assert first_line(RuntimeError("")) == ""
    assert first_line("a" * 50, limit=10) == "a" * 10


def test_dtype_names_agree_between_onnx_onnxruntime_and_numpy():
    import numpy as np
    from onnx import TensorProto

    from onnxbridge.graph._dtypes import display_name, from_onnx, from_ort

    assert from_ort("tensor(float)") == from_onnx(TensorProto.FLOAT) == np.float32
    assert from_ort("tensor(int64)") == np.int64
    assert display_name(from_ort("tensor(string)")) == "string"
    assert from_ort("tensor(bfloat16)") is None  # numpy has no bfloat16; users' arrays are never one
    assert from_ort("seq(tensor(float))") is None
    assert from_onnx(0) is None
    assert display_name(None) == "unknown"


def test_per_call_times_each_call_after_the_warm_up():
    from onnxbridge.core._timing import per_call

    calls, steps = [], []
    times = per_call(lambda: calls.append(1), 5, warmup=2, each=lambda: steps.append(1))
    assert len(times) == 5
    assert len(calls) == 7  # two untimed warm-up calls, then five timed ones
    assert len(steps) == 5


def test_stored_bytes_counts_every_tensors_bytes_without_reading_them():
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from onnxbridge.graph._files import stored_bytes

    tensors = [
        numpy_helper.from_array(np.ones(shape, dtype), f"t{i}")
        for i, (shape, dtype) in enumerate(
            [((3, 5), np.float32), ((7,), np.int64), ((2, 2), np.float16), ((4,), np.bool_), ((), np.float64)]
        )
    ]
    tensors.append(helper.make_tensor("packed", TensorProto.UINT4, [5], bytes([0x21, 0x43, 0x05]), raw=True))
    tensors.append(helper.make_tensor("listed", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))  # float_data, not raw
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [3, 5])], tensors)
    model = helper.make_model(graph)
    assert stored_bytes(model) == sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)
    assert stored_bytes(model) == 60 + 56 + 8 + 4 + 8 + 3 + tensors[-1].ByteSize()
