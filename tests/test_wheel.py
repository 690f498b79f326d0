"""The built wheel installs into a clean virtual environment and exports from there."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, torch, onnxbridge as ob
    assert "site-packages" in ob.__file__, ob.__file__
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    art = ob.export(model, torch.randn(1, 4), dynamic_axes="batch")
    report = art.validate()
    assert [c.passed for c in report.checks if c.name == "numeric parity"] == [True], report
    out = art.session().run(np.ones((3, 4), np.float32))["output"]
    art.save("model.onnx")
    assert art.compat("onnxruntime==1.18").ok  # the release record ships in the wheel
    print("exported", art.exporter, out.shape, ob.__version__)
    """
)


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_exports_and_runs_the_cli(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("onnxbridge-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    constraints = ROOT / "requirements" / "constraints.txt"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(constraints),
            f"{wheel}[torch]",
        ],
        check=True,
        capture_output=True,
    )
    result = subprocess.run([str(python), "-c", SCRIPT], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported torch.onnx (dynamo) (3, 2)" in result.stdout
    typed = subprocess.run(
        [
            str(python),
            "-c",
            "import onnxbridge, pathlib; print((pathlib.Path(onnxbridge.__file__).parent / 'py.typed').exists())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert typed.stdout.strip() == "True"
    inspect = subprocess.run(
        [str(env_dir / "bin" / "onnxbridge"), "inspect", "model.onnx", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["onnxbridge"]["framework"] == "torch"
