"""Record what each onnxruntime release can run, for ``Artifact.compat("onnxruntime==X.Y")``.

For every minor release since 1.16 (the first whose Python package lists its kernels) the
newest patch wheel is installed from PyPI into a cache folder, and an isolated interpreter asks
that release itself:

* its CPU kernels (``get_all_opkernel_def``): domain, operator, version range and the types
  each type parameter accepts;
* how many inputs each contrib operator takes (``get_all_operator_schema``): they gain optional
  inputs from release to release (``GroupQueryAttention``'s ``query_seqlens``);
* the newest IR version it loads, and the newest opset of each domain it loads, found by
  creating sessions for the small models of ``onnxbridge.checks._ort_releases.probe_models`` (the
  installed onnxruntime is probed with the same models).

The result is written to ``onnxbridge/data/onnxruntime_releases.json.gz``, which ships with the
package, so that ``compat`` needs no network and no old onnxruntime. Nothing here is typed in
by hand; run it again when a new onnxruntime is released:

    python scripts/ort_releases.py [--cache DIR] [--only 1.17]

``--verify MODEL.onnx ...`` checks the record instead: for each model and each release it
compares ``compat("onnxruntime==X")``'s verdict with the release really loading and running
the model (inputs made up from the declared shapes) and prints where they agree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxbridge.checks import _ort_releases  # noqa: E402

OUT = ROOT / "onnxbridge" / "data" / "onnxruntime_releases.json.gz"
FIRST_MINOR = 16  # onnxruntime 1.15's Python package cannot list its kernels

PROBE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as C

ort.set_default_logger_severity(4)
kernels = []
for k in C.get_all_opkernel_def():
    if k.provider == "CPUExecutionProvider":
        kernels.append([k.domain, k.op_name, k.version_range[0], k.version_range[1], k.type_constraints])
# How many inputs each contrib operator takes (they gain optional inputs from release to release).
inputs = {}
for schema in C.get_all_operator_schema():
    if schema.domain not in ("", "ai.onnx", "ai.onnx.ml") and not schema.deprecated:
        variadic = any(str(i.option).endswith("Variadic") for i in schema.inputs)
        count = 2**31 - 1 if variadic else len(schema.inputs)
        key = schema.domain + "|" + schema.name
        inputs[key] = max(inputs.get(key, 0), count)
loads = {}
for name in sorted(os.listdir(sys.argv[2])):
    try:
        s = ort.InferenceSession(os.path.join(sys.argv[2], name), providers=["CPUExecutionProvider"])
        s.run(None, {"x": np.ones((1, 2), np.float32)})
        loads[name] = True
    except Exception:
        loads[name] = False
print(json.dumps({"version": ort.__version__, "kernels": kernels, "inputs": inputs, "loads": loads}))
"""
# Load and run one model with made-up inputs in an old release; prints "ok" or the error.
RUN = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import onnxruntime as ort

ort.set_default_logger_severity(4)
try:
    s = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
    feeds = {}
    for i in s.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        kind = i.type[7:-1]
        dtype = {"float": np.float32, "double": np.float64, "float16": np.float16, "int64": np.int64,
                 "int32": np.int32, "bool": np.bool_, "uint8": np.uint8, "int8": np.int8}[kind]
        feeds[i.name] = np.ones(dims, dtype)
    s.run(None, feeds)
    print("ok")
except Exception as e:
    print("error:", str(e).splitlines()[0][:200])
"""


def _releases(only: str | None) -> list[str]:
    """The newest patch of each minor release from 1.16 on, as PyPI lists them."""
    text = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "onnxruntime"], capture_output=True, text=True, check=True
    ).stdout
    listed = next(line for line in text.splitlines() if line.startswith("Available versions:"))
    newest: dict[int, tuple[int, ...]] = {}
    for version in listed.split(":", 1)[1].split(","):
        parts = tuple(int(p) for p in version.strip().split("."))
        if parts[0] == 1 and parts[1] >= FIRST_MINOR and parts > newest.get(parts[1], ()):
            newest[parts[1]] = parts
    chosen = [".".join(map(str, v)) for _, v in sorted(newest.items())]
    return [v for v in chosen if only is None or v.startswith(only)]


def _probe(version: str, cache: Path, models: Path | None) -> dict:
    """Install ``version`` into the cache if needed; ask it for its kernels and loads (nothing when no models)."""
    target = cache / version
    if not (target / "onnxruntime").is_dir():
        old = tuple(map(int, version.split(".")))[:2] < (1, 19)  # 1.19 is the first built against NumPy 2
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
        numpy = "numpy<2" if old else "numpy>=2"
        subprocess.run([*pip, "--target", str(target), f"onnxruntime=={version}", numpy], check=True)
    if models is None:
        return {}
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(target), str(models)], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"probing onnxruntime {version} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def _verify(models: list[Path], cache: Path) -> int:
    """Print, per model and release, compat's verdict beside the release really running the model."""
    import onnxbridge as ob

    disagreements = 0
    print("| model | release | compat | really | agree |\n|---|---|---|---|---|")
    for path in models:
        art = ob.load(path)
        for version in _ort_releases.recorded_releases():
            _probe(version, cache, None)
            report = art.compat(f"onnxruntime=={version}")
            really = subprocess.run(
                [sys.executable, "-I", "-S", "-c", RUN, str(cache / version), str(path)], capture_output=True, text=True
            ).stdout.strip()
            agree = report.ok == (really == "ok")
            disagreements += not agree
            verdict = "ok" if report.ok else "; ".join(f.problem for f in report.findings)[:90]
            print(f"| {path.name} | {version} | {verdict} | {really[:90]} | {'yes' if agree else 'NO'} |", flush=True)
    print(f"{disagreements} disagreement(s)")
    return 1 if disagreements else 0


def main() -> int:
    """Record the releases (or verify the record); return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "onnxbridge-ort-releases")
    parser.add_argument("--only", help="probe only releases starting with this (prints, writes nothing)")
    parser.add_argument("--verify", nargs="+", type=Path, metavar="MODEL", help="check the record on these models")
    args = parser.parse_args()
    if args.verify:
        return _verify(args.verify, args.cache)
    args.cache.mkdir(parents=True, exist_ok=True)
    releases = _releases(args.only)
    limits: dict[str, dict] = {}
    # (domain, op, start, end) -> type parameter ("" for the kernel itself) -> type -> bitmask of releases
    kernels: dict[str, dict[str, dict[str, int]]] = {}
    inputs: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in _ort_releases.probe_models().items():
            (Path(tmp) / name).write_bytes(model.SerializeToString())
        for index, version in enumerate(releases):
            found = _probe(version, args.cache, Path(tmp))
            ir, opsets = _ort_releases.limits(found["loads"])
            limits[version] = {"ir": ir, "opsets": opsets}
            for domain, op, start, end, constraints in found["kernels"]:
                entry = kernels.setdefault(f"{domain or 'ai.onnx'}|{op}|{start}|{end}", {})
                entry.setdefault("", {}).setdefault("", 0)
                entry[""][""] |= 1 << index
                for param, types in constraints.items():
                    for t in types:
                        entry.setdefault(param, {}).setdefault(t, 0)
                        entry[param][t] |= 1 << index
            for key, count in found["inputs"].items():  # contrib operator -> input count -> bitmask of releases
                inputs.setdefault(key, {}).setdefault(str(count), 0)
                inputs[key][str(count)] |= 1 << index
            print(f"onnxruntime {version}: {limits[version]}, {len(found['kernels'])} CPU kernels", flush=True)
    if args.only:
        return 0
    data = {
        "about": "written by scripts/ort_releases.py from each release's own kernel registry; do not edit",
        "onnx": onnx.__version__,
        "releases": releases,
        "limits": limits,
        "kernels": kernels,
        "inputs": inputs,
    }
    OUT.parent.mkdir(exist_ok=True)
    text = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    OUT.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))  # mtime=0: the same data, the same bytes
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
