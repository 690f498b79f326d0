"""Decoder LLMs side by side: onnxbridge against onnxruntime-genai's model builder and transformers eager.

Run with ``python benchmarks/bench_llm.py [--models llama,qwen2] [--rounds 5] [--profile]``. Not part
of the tests. Needs ``onnxbridge[transformers,genai]``.

The models are the issue's: Llama (and Qwen2) architecture, hidden 512, 8 layers, 8 heads with 2
KV heads, intermediate 1408, vocabulary 32000 (55 M parameters), random weights from seed 0,
saved with ``save_pretrained`` beside a tokenizer built offline (genai's builder refuses a folder
without one). Nothing is downloaded.

Engines, all on one intra-op thread:

* transformers eager (``model.generate``, KV cache);
* onnxbridge fp32 (``ob.export(model, fused=False)``: standard operators, then ``generate()``),
  fused (``ob.export(model)``, the default), the fused graph in int4 and int8-weight, and int4 of
  the unfused graph;
* onnxruntime-genai fp32 and int4, built by its model builder from the same folder and run by
  its own C++ loop (``og.Generator``).

Speed: batch 1, a 32-token prompt, 64 new tokens, greedy, EOS suppressed so every engine makes
the same number of tokens. Each engine runs once per round in an order that rotates between
rounds. Time to first token is the time of a run with one new token; tokens/s is 63 over the
difference between a 64-token run and that. Medians over rounds; ratios are per round.

Memory: the peak resident memory (``VmHWM``) of a fresh process that loads the saved model and
generates, one process per engine (what a deployment pays); onnxbridge's files are saved with
external data, as genai's builder writes its own.
Files: the bytes on disk. Export: wall time of ``ob.export`` (plus ``quantize()`` for the
derived rows) and of the builder, on the same machine. The default (fused) export runs first
and pays torch.onnx's imports, as the builder's subprocess pays its own; ``fused=False`` runs
second and does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _timing import table

warnings.filterwarnings("ignore")
PROMPT, NEW = 32, 64
BUILDER = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
SIZES = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 1408,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def build(kind: str, folder: Path) -> None:
    """The model folder: config, random weights from seed 0, and a tokenizer built offline."""
    import torch
    import transformers

    from tests import hf_zoo

    torch.manual_seed(0)
    config = (transformers.LlamaConfig if kind == "llama" else transformers.Qwen2Config)(**SIZES)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    hf_zoo.tiny_tokenizer(SIZES["vocab_size"]).save_pretrained(folder)


def genai_build(source: Path, out: Path, precision: str) -> float:
    """Seconds onnxruntime-genai's builder took; its config is set to one intra-op thread."""
    start = time.perf_counter()
    subprocess.run(
        [*BUILDER, "-i", str(source), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(out / "cache")],
        check=True,
        capture_output=True,
    )
    spent = time.perf_counter() - start
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = 1
    config_path.write_text(json.dumps(config, indent=2))
    return spent


def folder_bytes(path: Path) -> int:
    """A model's bytes on disk: the file and its external data, or a folder without genai's build cache."""
    if path.is_file():
        files = [path, *[p for p in [path.with_name(path.name + ".data")] if p.exists()]]
    else:
        files = [p for p in path.rglob("*") if p.is_file() and "cache" not in p.parts]
    return sum(p.stat().st_size for p in files)


def genai_generate(model: object, ids: np.ndarray, new: int) -> np.ndarray:
    """Greedy tokens from onnxruntime-genai's own loop, EOS suppressed (``min_length``)."""
    import onnxruntime_genai as og

    total = ids.shape[1] + new
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=total, min_length=total, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    return np.array(generator.get_sequence(0))[None]


# -- one engine in a fresh process: load, generate, report peak memory ----------------------------
def _serve(engine: str, path: str) -> None:
    ids = np.arange(10, 10 + PROMPT, dtype=np.int64)[None]
    if engine.startswith("genai"):
        import onnxruntime_genai as og

        genai_generate(og.Model(path), ids, NEW)
    else:
        import onnxbridge as ob

        art = ob.load(path)
        art.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, session=art.session(["cpu"], threads=1))
    print(json.dumps({"peak": peak_rss()}))


def peak_rss() -> int:
    """This process's peak resident bytes (``VmHWM``: reset by exec, unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def serving_peak(engine: str, path: Path) -> int:
    done = subprocess.run(
        [sys.executable, __file__, "--serve", engine, str(path)], capture_output=True, text=True, check=True
    )
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak"])


# -- timing ---------------------------------------------------------------------------------------
def runners(kind: str, work: Path, source: Path, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """{engine: run(new_tokens) -> tokens}, {engine: export seconds}, {engine: saved path}."""
    import onnxruntime_genai as og
    import torch
    import transformers

    import onnxbridge as ob

    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    ids = np.arange(10, 10 + PROMPT, dtype=np.int64)[None]
    runs: dict[str, Callable[[int], np.ndarray]] = {}
    export: dict[str, float] = {}
    saved: dict[str, Path] = {}

    def eager(new: int) -> np.ndarray:
        with torch.no_grad():
            out = model.generate(torch.from_numpy(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return out.numpy()

    runs["transformers eager"] = eager
    variants = {}
    for name, fused in (("onnxbridge fused", True), ("onnxbridge fp32", False)):
        start = time.perf_counter()
        variants[name] = ob.export(model, fused=fused)  # fused=True is the default
        export[name] = time.perf_counter() - start
    for name, parent, mode in (
        ("onnxbridge fused int4", "onnxbridge fused", "int4"),
        ("onnxbridge fused int8-weight", "onnxbridge fused", "int8-weight"),
        ("onnxbridge int4 (unfused)", "onnxbridge fp32", "int4"),
    ):
        start = time.perf_counter()
        variants[name] = variants[parent].quantize(mode)
        export[name] = export[parent] + time.perf_counter() - start
    for name, variant in variants.items():
        # with external data, as genai's builder writes its model: onnxruntime maps the weights
        saved[name] = variant.save(work / f"{name.replace(' ', '-')}.onnx", reference=False, external_data=True)
        session = variant.session(["cpu"], threads=1)
        runs[name] = lambda new, v=variant, s=session: v.generate(
            ids, max_new_tokens=new, min_new_tokens=new, session=s
        )
        if args.profile and name == "onnxbridge fused":
            profile_operators(variant, ids)
    for precision in ("fp32", "int4"):
        out = work / f"genai-{precision}"
        export[f"genai {precision}"] = genai_build(source, out, precision)
        saved[f"genai {precision}"] = out
        genai_model = og.Model(str(out))

        runs[f"genai {precision}"] = lambda new, m=genai_model: genai_generate(m, ids, new)
    want = eager(NEW)
    for name, run in runs.items():
        same = bool(np.array_equal(run(NEW)[:, : want.shape[1]], want))
        print(f"  {name}: greedy tokens identical to transformers over {NEW} tokens: {same}", flush=True)
    return runs, export, saved


def profile_operators(variant: object, ids: np.ndarray) -> None:
    """Where a generation's time goes, per operator type (onnxruntime's profiler, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    session = variant.session(["cpu"], threads=1, options=options)  # type: ignore[attr-defined]
    variant.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, session=session)  # type: ignore[attr-defined]
    trace = json.loads(Path(session.ort_session.end_profiling()).read_text())
    spent: dict[str, float] = {}
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            spent[op] = spent.get(op, 0.0) + event["dur"]
    total = sum(spent.values())
    rows = [[op, f"{us / 1e3:.1f}", f"{us / total:.1%}"] for op, us in sorted(spent.items(), key=lambda x: -x[1])]
    print("\nonnxbridge fused: kernel time per operator over one generation")
    print(table(["operator", "ms", "share"], rows[:15]))


def measure(kind: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / kind
        build(kind, source)
        print(f"\n## {kind}: {SIZES['num_hidden_layers']} layers, hidden {SIZES['hidden_size']}", flush=True)
        runs, export, saved = runners(kind, work, source, args)
        names = list(runs)
        for run in runs.values():
            run(NEW)  # warm-up
        first: dict[str, list[float]] = {n: [] for n in names}
        speed: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                start = time.perf_counter()
                runs[name](1)
                one = time.perf_counter() - start
                time.sleep(0.05)
                start = time.perf_counter()
                runs[name](NEW)
                full = time.perf_counter() - start
                time.sleep(0.05)
                first[name].append(one)
                speed[name].append((NEW - 1) / max(full - one, 1e-9))
        eager = speed["transformers eager"]
        genai = speed["genai fp32"]
        rows = []
        for name in names:
            vs_eager = statistics.median(s / e for s, e in zip(speed[name], eager, strict=True))
            vs_genai = statistics.median(s / g for s, g in zip(speed[name], genai, strict=True))
            vs_genai_int4 = statistics.median(s / g for s, g in zip(speed[name], speed["genai int4"], strict=True))
            peak = serving_peak(name, saved[name]) if name in saved else None
            rows.append(
                [
                    name,
                    f"{statistics.median(speed[name]):.1f}",
                    f"{vs_eager:.2f}x",
                    f"{vs_genai:.2f}x",
                    f"{vs_genai_int4:.2f}x",
                    f"{statistics.median(first[name]) * 1e3:.0f}",
                    f"{peak / 2**20:.0f}" if peak else "-",
                    f"{folder_bytes(saved[name]) / 1e6:.1f}" if name in saved else "-",
                    f"{export[name]:.1f}" if name in export else "-",
                ]
            )
        print(
            f"\nbatch 1, prompt {PROMPT}, {NEW} new tokens, greedy, 1 thread, median of {args.rounds} interleaved "
            "rounds; peak MB: a fresh process loading the saved model and generating"
        )
        header = ["engine", "tokens/s", "vs eager", "vs genai fp32", "vs genai int4", "first token ms"]
        print(table([*header, "peak MB", "file MB", "export s"], rows))
        for name in ("onnxbridge fused", "onnxbridge fp32"):
            print(f"export time, {name} / genai builder fp32: {export[name] / export['genai fp32']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="llama,qwen2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="per-operator time of the fused graph")
    parser.add_argument("--serve", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(*args.serve)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for kind in args.models.split(","):
        measure(kind, args)


if __name__ == "__main__":
    main()
