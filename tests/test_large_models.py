"""Models too big to pass around as bytes: scratch files, external data, and one past 2 GiB."""

from __future__ import annotations

import gc
import os
import tempfile

import numpy as np
import onnx
import pytest

import onnxbridge as ob
from onnxbridge.graph import _files, _scratch
from tests.parity import assert_parity

torch = pytest.importorskip("torch")


def _wide_mlp(width: int, layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    blocks: list[torch.nn.Module] = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks[:-1]).eval()


@pytest.fixture(scope="module")
def mid_sized():
    """An export with ~50 MB of weights: past the size where tools get a file instead of bytes."""
    model = _wide_mlp(2560)
    sample = torch.randn(3, 2560)
    art = ob.export(model, sample, dynamic_axes={"input": {0: "batch"}})
    assert _scratch.wants_file(art.model)
    return model, sample, art


def _scratch_folders() -> set[str]:
    root = tempfile.gettempdir()
    return {name for name in os.listdir(root) if name.startswith(_scratch.PREFIX)}


def test_validation_and_sessions_of_a_big_model_read_a_scratch_file_removed_with_the_artifact(mid_sized):
    model, sample, _ = mid_sized
    before = _scratch_folders()
    art = ob.export(model, sample, dynamic_axes={"input": {0: "batch"}})
    report = art.validate()
    assert report.ok
    made = _scratch_folders() - before
    assert len(made) == 1  # one copy, shared by the checker and every session
    art.session().run(sample.numpy())
    assert _scratch_folders() - before == made
    del art, report
    gc.collect()
    assert _scratch_folders() - before == set()


def test_external_data_is_aligned_so_onnxruntime_can_map_it(mid_sized, tmp_path):
    _, sample, art = mid_sized
    path = art.save(tmp_path / "model.onnx", external_data=True)
    shell = onnx.load(str(path), load_external_data=False)
    offsets = {
        t.name: int({e.key: e.value for e in t.external_data}.get("offset", 0))
        for t in shell.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }
    assert offsets, "weights should be external"
    big = [t.name for t in shell.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert all(offsets[name] % _files.EXTERNAL_ALIGNMENT == 0 for name in big)
    assert path.stat().st_size < 1 << 20  # the graph and the recorded reference, no weights
    loaded = ob.load(path)
    np.testing.assert_array_equal(loaded.session().run(sample.numpy())["output"], art.session().run(sample)["output"])


_PEAK_AFTER_LOAD = """
import sys
from pathlib import Path
import numpy as np
import onnx
import onnxruntime
import onnxbridge as ob

def peak():
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM"))

feeds = {"input": np.ones((2, 2560), dtype=np.float32)}
before = peak()  # the libraries' own pages are in
if sys.argv[2] == "onnxbridge":
    art = ob.load(sys.argv[1])
    names = art.input_names  # the signature is there without the weights
    out = art.session(["cpu"]).run(feeds)["output"]
else:
    out = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, feeds)[0]
print(peak() - before, float(out.sum()))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM (Linux)")
def test_a_loaded_big_model_runs_at_bare_onnxruntime_s_memory_until_python_needs_its_weights(mid_sized, tmp_path):
    import subprocess
    import sys

    _, _, art = mid_sized
    path = art.save(tmp_path / "model.onnx", external_data=True)
    weights = _files.declared_bytes(art.model)
    added, totals = {}, {}
    for who in ("onnxbridge", "onnxruntime"):
        done = subprocess.run([sys.executable, "-c", _PEAK_AFTER_LOAD, str(path), who], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        added[who], totals[who] = (float(x) for x in done.stdout.split())
    # Python holds none of the weights (before: a parsed copy beside onnxruntime's, +1x)
    extra = (added["onnxbridge"] - added["onnxruntime"]) / weights
    assert extra < 0.25, f"{extra:.2f}x the weights more than a bare onnxruntime session"
    assert totals["onnxbridge"] == totals["onnxruntime"]
    loaded = ob.load(path)
    np.testing.assert_array_equal(  # the weights are read from the file when Python needs them
        onnx.numpy_helper.to_array(loaded.model.graph.initializer[0]),
        onnx.numpy_helper.to_array(art.model.graph.initializer[0]),
    )


def test_abandoned_scratch_folders_are_removed_and_live_ones_kept(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    past = os.stat(tmp_path).st_mtime - 10**6
    abandoned, live, unlocked, foreign = (
        tmp_path / "onnxbridge-scratch-dead01",
        tmp_path / "onnxbridge-scratch-live01",
        tmp_path / "onnxbridge-scratch-nolock",
        tmp_path / "onnxbridge-mine",
    )
    for folder in (abandoned, live, unlocked, foreign):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"weights")
    for folder in (abandoned, live, foreign):
        (folder / _scratch.LOCK_NAME).write_bytes(b"")
    for folder in (abandoned, live, unlocked, foreign):
        os.utime(folder, (past, past))
    with (live / _scratch.LOCK_NAME).open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running process holds its own
        removed = _scratch.remove_abandoned(tmp_path)
    assert removed == [abandoned]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, unlocked, foreign))


@pytest.mark.slow
def test_model_past_2_gib_exports_validates_saves_loads_and_runs_identically(tmp_path):
    model = _wide_mlp(16384)  # two 16384x16384 float32 weights: 2 GiB + biases
    sample = torch.randn(2, 16384)
    with torch.no_grad():
        expected = model(sample).numpy()
    art = ob.export(model, sample, dynamic_axes={"input": {0: "batch"}})
    assert _files.is_large(art.model)
    report = art.validate()
    assert report.ok, report
    assert report.checks[0].passed  # onnx.checker, from the scratch file
    session = art.session()
    outputs = session.run(sample.numpy())["output"]
    np.testing.assert_allclose(outputs, expected, rtol=1e-3, atol=1e-4)
    del session

    path = art.save(tmp_path / "big.onnx")  # external data chosen automatically
    assert (tmp_path / "big.onnx.data").stat().st_size >= 2**31
    assert path.stat().st_size < 1 << 20
    del art, model
    gc.collect()

    loaded = ob.load(path)
    assert_parity(loaded.validate())  # against the reference outputs recorded in the file
    np.testing.assert_array_equal(loaded.session().run(sample.numpy())["output"], outputs)
