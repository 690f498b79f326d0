"""The ``onnxbridge`` command line (also ``python -m onnxbridge``).

Errors print one line and exit non-zero; ``--debug`` shows the traceback instead.
Exit status: 0 success, 1 a check failed (validate, compat), 2 usage or file error.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import onnxbridge as ob
from onnxbridge.cli._values import UsageError, latency_stats, parse_shapes, parse_tolerance, random_inputs
from onnxbridge.core import _timing
from onnxbridge.core._errors import first_line
from onnxbridge.exporting import _describe

app = typer.Typer(
    name="onnxbridge",
    help="Inspect, validate, convert, quantize, benchmark and run ONNX models (onnxbridge's, or any ONNX file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}

ModelArg = Annotated[
    Path, typer.Argument(help="An .onnx file (or a saved encoder-decoder folder).", show_default=False)
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    _state["debug"] = debug


def _fail(err: BaseException) -> typer.Exit:
    if _state["debug"]:
        raise err
    print(f"error: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
    return typer.Exit(2)


def _one_line(err: BaseException) -> str:
    """The message's first line; a first line that ends with ':' brings what it introduces."""
    head = first_line(err)
    if not head.endswith(":"):
        return head
    rest = [line.strip(" -") for line in str(err).splitlines()[1:] if line.strip()]
    return f"{head} {'; '.join(rest)}"[:600]


def _load(path: Path) -> ob.Artifact | ob.EncoderDecoderArtifact:
    try:
        return ob.load(path)
    except ob.OnnxBridgeError as err:
        raise _fail(err) from err


def _load_graph(path: Path, command: str) -> ob.Artifact:
    """One graph: a saved encoder-decoder folder is refused with the files to name instead."""
    art = _load(path)
    if isinstance(art, ob.EncoderDecoderArtifact):
        raise _fail(
            UsageError(
                f"{str(path)!r} holds two graphs (an encoder-decoder export); `onnxbridge {command}` runs one graph. "
                f"Name one: {str(path / 'encoder.onnx')!r} or {str(path / 'decoder.onnx')!r}."
            )
        )
    return art


# -- inspect --------------------------------------------------------------------------------------
@app.command()
def inspect(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")] = False,
) -> None:
    """Show inputs, outputs, opsets, operators, size and onnxbridge's metadata.

    Example: onnxbridge inspect model.onnx --json
    """
    art = _load(model)
    if isinstance(art, ob.EncoderDecoderArtifact):
        graphs = {
            role: _describe.file_summary(part.model, model / f"{role}.onnx") for role, part in art.components.items()
        }
        if as_json:
            print(json.dumps({"path": str(model), "kind": "encoder-decoder", "graphs": graphs}, indent=2, default=str))
            return
        console.print(f"[bold]{model}[/bold]  encoder-decoder export: {', '.join(graphs)}")
        for info in graphs.values():
            _print_summary(info)
        return
    info = _describe.file_summary(art.model, model)
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    _print_summary(info)


def _print_summary(info: dict[str, Any]) -> None:
    console.print(
        f"[bold]{info['path']}[/bold]  {info['size_bytes'] / 1024:.1f} KiB, IR {info['ir_version']}, "
        f"opsets {info['opsets']}, producer {info['producer'] or '-'}"
    )
    for kind in ("inputs", "outputs"):
        table = Table(title=kind, title_justify="left")
        for column in ("name", "dtype", "shape"):
            table.add_column(column)
        for t in info[kind]:
            table.add_row(escape(t["name"]), t["dtype"], escape("[" + ", ".join(map(str, t["shape"])) + "]"))
        console.print(table)
    ops = ", ".join(f"{op} x{n}" for op, n in info["operators"].items())
    console.print(f"operators ({sum(info['operators'].values())}): {ops}")
    console.print(f"initializers: {info['initializers']} ({info['initializer_bytes'] / 1024:.1f} KiB)")
    bridge = info["onnxbridge"]
    if bridge:
        console.print(f"exported from {bridge['framework']} ({bridge['framework_version']}) with {bridge['exporter']}")
        if bridge.get("validation"):
            console.print(f"last validation: {'passed' if bridge['validation']['ok'] else 'FAILED'}")
        if bridge.get("quantization"):
            q = bridge["quantization"]
            console.print(f"quantization: {q['mode']} ({q['size_after'] / max(q['size_before'], 1):.2f}x size)")


# -- validate -------------------------------------------------------------------------------------
@app.command()
def validate(
    model: ModelArg,
    rtol: Annotated[
        float | None, typer.Option(help="Relative tolerance (default 1e-3, or the quantized mode's).")
    ] = None,
    atol: Annotated[
        float | None, typer.Option(help="Absolute tolerance (default 1e-5, or the quantized mode's).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Judge by rtol/atol alone, no allowance for float noise.")] = False,
) -> None:
    """Check structure, symbolic axes and, where the file recorded reference outputs, numeric parity.

    Exit status 0 when it passes, 1 when a check fails, 2 for a usage or file error.

    Example: onnxbridge validate model.onnx
    """
    art = _load(model)
    try:
        report = art.validate(rtol=rtol, atol=atol, strict=strict, raise_on_failure=False)
    except ob.OnnxBridgeError as err:
        raise _fail(err) from err
    print(report)
    raise typer.Exit(0 if report.ok else 1)


# -- export ---------------------------------------------------------------------------------------
@app.command("export")
def export_(
    source: Annotated[Path, typer.Argument(help="A model file or folder (kinds: see below).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .onnx model.")],
    task: Annotated[str | None, typer.Option(help="transformers task, when the folder does not say.")] = None,
    input: Annotated[
        list[str] | None,
        typer.Option("--input", help="A sample input: name=1x3x224x224[:float32] (repeatable; in input order)."),
    ] = None,
    dynamic: Annotated[
        list[str] | None,
        typer.Option(help="Dynamic axes: 'batch' (axis 0 everywhere) or name=0:batch,1:seq (repeatable)."),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default: the newest the exporter and runtime share).")
    ] = None,
    signature: Annotated[str | None, typer.Option(help="SavedModel signature (default serving_default).")] = None,
    validate: Annotated[bool, typer.Option(help="Validate against the source model before writing.")] = True,
    quantize: Annotated[str | None, typer.Option(help="Also quantize: dynamic, fp16, weight-only, int4, ...")] = None,
    layout: Annotated[str | None, typer.Option(help="A folder for genai, transformers.js or optimum.")] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            help="Open .pkl/.joblib files. Unpickling runs code stored in the file: only for files you trust."
        ),
    ] = False,
    trust_type: Annotated[
        list[str] | None, typer.Option(help="A type a .skops file may load beyond skops' safe defaults (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")] = False,
) -> None:
    """Export a model file to ONNX, validate it against the source, and write it.

    SOURCE may be: a transformers model folder (save_pretrained; no --input needed), a TensorFlow
    SavedModel folder (--signature), a Keras .keras/.h5 file, a torch.export .pt2 program, a
    TorchScript .pt file (needs --input), an XGBoost .json/.ubj or LightGBM .txt model, a
    scikit-learn .skops file (skops' safe format; --trust-type for types beyond its defaults), a
    pickle/joblib file (only with --trust-pickle), or an .onnx file (re-validated; --opset converts it). A bare PyTorch
    state_dict is refused: weights alone cannot be exported.

    Exit status 0 only when the export validated (nothing is written otherwise), 1 when
    validation failed, 2 for a usage, file or export error. With --layout, OUTPUT is a folder that
    runtime loads as it is (settings and tokenizer files too).

    Example: onnxbridge export model.pt2 -o model.onnx --dynamic batch --json
    """
    from onnxbridge.cli import _sources
    from onnxbridge.deploy import _layouts

    try:
        _layouts.check_layout(layout)  # before the export, which takes a while
        found = _sources.open_source(
            source, signature=signature, trust_pickle=trust_pickle, trusted_types=trust_type or []
        )
        progress = errors.status(f"exporting {found.kind} ...", spinner="dots") if not as_json else nullcontext()
        with progress:
            inputs, axes = _sources.parse_inputs(input or []), _sources.parse_dynamic(dynamic or [])
            art = _sources.export_source(found, task=task, inputs=inputs, dynamic_axes=axes, opset=opset)
            started = time.perf_counter()
            report, checked = art.validate(raise_on_failure=False) if validate else None, time.perf_counter() - started
            if report is not None and not report.ok:
                print(report, file=sys.stderr)
                raise typer.Exit(1)
            result = art.quantize(quantize) if quantize else art
            result.save(output, layout=layout)
    except (ob.OnnxBridgeError, UsageError, OSError) as err:
        raise _fail(err) from err
    summary = {
        "output": str(output),
        "source": found.kind,
        "framework": art.framework,
        "exporter": art.exporter,
        "inputs": art.input_names,
        "outputs": art.output_names,
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in art.dynamic_axes.items()},
        "validation": report.summary() if report is not None else None,
        "quantization": result.quantization.mode.value if result.quantization is not None else None,
        "layout": layout,
        "seconds": {**art.export_seconds, **({"validate": round(checked, 3)} if report is not None else {})},
    }
    if as_json:
        print(json.dumps(summary))
        return
    if report is not None:
        print(report)
    print(f"wrote {output} ({found.kind} -> {art.framework} via {art.exporter})")


# -- convert --------------------------------------------------------------------------------------
@app.command()
def convert(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the converted model.")],
    opset: Annotated[int, typer.Option(help="The opset of the default ONNX domain to convert to.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")] = False,
) -> None:
    """Convert a model to another opset, validated against the outputs recorded in the file.

    An operator newer than --opset is named with the lowest opset the model can go to (exit 2);
    a conversion that changes the outputs fails validation (exit 1).

    Example: onnxbridge convert model.onnx --opset 13 -o model.opset13.onnx
    """
    art = _load(model)
    try:
        converted = art.with_opset(opset)
        converted.save(output)
    except ob.ValidationError as err:
        print(err.report, file=sys.stderr)
        raise typer.Exit(1) from err
    except (ob.OnnxBridgeError, OSError) as err:
        raise _fail(err) from err
    report = converted.validation
    assert report is not None  # with_opset validates
    if as_json:
        notes = [n for n in converted.export_notes if n not in art.export_notes]
        print(json.dumps({"output": str(output), "opset": opset, "notes": notes, "validation": report.summary()}))
        return
    print(report)
    print(f"wrote {output} (opset {opset})")


@app.command()
def compat(
    model: ModelArg,
    target: Annotated[str, typer.Option(help="onnxruntime==1.17, onnxruntime (installed), onnxruntime-web, opset=13.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")] = False,
) -> None:
    """Check, before deploying, what would fail on the target runtime; each finding names a fix.

    onnxruntime releases from 1.16 are checked against their recorded IR version, opsets and CPU
    kernels; onnxruntime-web runs the model under Node.js. Exit 0 compatible, 1 problems, 2 errors.

    Example: onnxbridge compat model.onnx --target onnxruntime==1.17
    """
    art = _load(model)
    try:
        report = art.compat(target)
    except ob.OnnxBridgeError as err:
        raise _fail(err) from err
    print(report.to_json() if as_json else report)
    raise typer.Exit(0 if report.ok else 1)


# -- quantize -------------------------------------------------------------------------------------
@app.command()
def quantize(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the quantized model.")],
    mode: Annotated[
        str, typer.Option(help="dynamic, static, fp16, weight-only, int4, int8-weight or auto.")
    ] = "dynamic",
    calibration: Annotated[
        Path | None, typer.Option(help=".npz with one batched array per model input (needed for static).")
    ] = None,
    tolerance: Annotated[
        list[str] | None, typer.Option(help="Accuracy to keep, e.g. cosine=0.99 (repeatable: top1=, max_abs=).")
    ] = None,
    objective: Annotated[str, typer.Option(help="For --mode auto: latency or size.")] = "latency",
    allow_slower: Annotated[
        bool, typer.Option(help="Keep an int8 result even when it runs slower than float on this CPU.")
    ] = False,
    block_size: Annotated[
        int, typer.Option(help="For weight-only modes: weights per scale (a power of two >= 16).")
    ] = 32,
) -> None:
    """Quantize a model and print the quantization report.

    Example: onnxbridge quantize model.onnx -o model.int8.onnx --mode static --calibration data.npz
    """
    modes = ("dynamic", "static", "fp16", "weight-only", "int4", "int8-weight", "auto")
    if mode not in modes:
        raise _fail(UsageError(f"--mode {mode!r}: use {', '.join(modes)} (qat needs Python: Artifact.quantize)."))
    art = _load(model)
    try:
        samples = _calibration(art, calibration) if calibration else None
        q = art.quantize(
            mode,
            calibration=samples,
            tolerance=parse_tolerance(tolerance),
            objective=objective,
            allow_slower=allow_slower,
            block_size=block_size,
        )
        q.save(output)
    except (ob.OnnxBridgeError, UsageError, OSError) as err:
        raise _fail(err) from err
    if isinstance(q, ob.EncoderDecoderArtifact):
        for role, part in q.components.items():
            print(f"{role}: {part.quantization}")
    else:
        print(q.quantization)
    print(f"wrote {output}")


def _calibration(art: ob.Artifact | ob.EncoderDecoderArtifact, path: Path) -> list[dict[str, np.ndarray]]:
    if isinstance(art, ob.EncoderDecoderArtifact):
        raise UsageError(
            "--calibration holds one graph's inputs, and this is an encoder-decoder folder: quantize without it "
            "(both graphs are measured on their export samples), or quantize encoder.onnx and decoder.onnx one by one."
        )
    if not path.is_file():
        raise UsageError(f"calibration file {str(path)!r} does not exist.")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if set(arrays) != set(art.input_names):
        if len(arrays) == 1 and len(art.input_names) == 1:
            arrays = {art.input_names[0]: next(iter(arrays.values()))}
        else:
            raise UsageError(
                f"calibration file has arrays {sorted(arrays)}, but the model's inputs are {art.input_names}; "
                "save one batched array per input name (np.savez(path, **{name: array}))."
            )
    rows = min(len(a) for a in arrays.values())
    return [{k: v[i : i + 16] for k, v in arrays.items()} for i in range(0, rows, 16)]


# -- bench ----------------------------------------------------------------------------------------
def _latencies(sess: ob.Session, feeds: dict[str, np.ndarray], runs: int, label: str) -> list[float]:
    from rich.progress import Progress

    with Progress(console=errors, transient=True, disable=runs < 200) as progress:
        task = progress.add_task(label, total=runs)
        return _timing.per_call(lambda: sess.run(feeds), runs, each=lambda: progress.advance(task))


@app.command()
def bench(
    model: ModelArg,
    batch: Annotated[int, typer.Option(min=1, help="Size of symbolic first dimensions.")] = 1,
    providers: Annotated[str, typer.Option(help="Comma-separated providers, e.g. cuda,cpu.")] = "cpu",
    threads: Annotated[int | None, typer.Option(min=0, help="Intra-op threads.")] = None,
    shape: Annotated[list[str] | None, typer.Option(help="Shape for an input: name=1x3x224x224 (repeatable).")] = None,
    runs: Annotated[int, typer.Option(min=5, help="Timed runs per model.")] = 200,
    compare: Annotated[Path | None, typer.Option(help="Another .onnx to benchmark side by side.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Latency percentiles (p50/p90/p99) and throughput on random inputs.

    Example: onnxbridge bench model.onnx --batch 8 --shape input=8x3x224x224 --compare model.int8.onnx
    """
    paths = [model] + ([compare] if compare else [])
    try:
        shapes = parse_shapes(shape)
        sessions = [_load_graph(p, "bench").session(providers=providers.split(","), threads=threads) for p in paths]
        feeds = [random_inputs(s, batch, shapes) for s in sessions]
        results: dict[str, dict[str, float]] = {str(p): {} for p in paths}
        if compare:  # interleave blocks so both see the same machine load
            timings: list[list[float]] = [[], []]
            for _ in range(5):
                for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
                    timings[i] += _latencies(s, f, max(1, runs // 5), paths[i].name)
        else:
            timings = [_latencies(sessions[0], feeds[0], runs, model.name)]
        for path, times in zip(paths, timings, strict=True):
            results[str(path)] = latency_stats(times, batch)
    except (ob.OnnxBridgeError, UsageError) as err:
        raise _fail(err) from err
    if compare:
        results["ratio"] = {k: results[str(compare)][k] / results[str(model)][k] for k in results[str(model)]}
    if as_json:
        print(json.dumps({"providers": list(sessions[0].providers), "batch": batch, "results": results}, indent=2))
        return
    table = Table(title=f"batch {batch}, providers {', '.join(sessions[0].providers)}", title_justify="left")
    for column in ("model", "p50 ms", "p90 ms", "p99 ms", "throughput /s"):
        table.add_column(column)
    for name, r in results.items():
        cells = [f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['throughput_per_s']:.0f}"]
        if name == "ratio":
            cells = [f"{r[k]:.2f}x" for k in ("p50_ms", "p90_ms", "p99_ms", "throughput_per_s")]
        table.add_row(Path(name).name if name != "ratio" else "compare / model", *cells)
    console.print(table)


# -- run ------------------------------------------------------------------------------------------
@app.command()
def run(
    model: ModelArg,
    input: Annotated[list[str], typer.Option("--input", help="name=path.npy (repeatable).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the outputs (.npz).")] = Path(
        "outputs.npz"
    ),
    providers: Annotated[str, typer.Option(help="Comma-separated providers.")] = "cpu",
) -> None:
    """Run the model once on .npy inputs and write its outputs as .npz.

    Example: onnxbridge run model.onnx --input input=x.npy -o outputs.npz
    """
    art = _load_graph(model, "run")
    try:
        feeds = {}
        for item in input:
            name, sep, path = item.partition("=")
            if not sep or not name:
                raise UsageError(f"--input {item!r}: expected name=path.npy.")
            if not Path(path).is_file():
                raise UsageError(f"input file {path!r} does not exist.")
            feeds[name] = np.load(path, allow_pickle=False)
        outputs = art.session(providers=providers.split(",")).run(feeds)
        from onnxbridge.graph._files import atomic_write

        with atomic_write(output) as handle:
            np.savez(handle, **outputs)  # type: ignore[arg-type]
    except (ob.OnnxBridgeError, UsageError, OSError, ValueError) as err:
        raise _fail(err) from err
    print(f"wrote {output}: " + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in outputs.items()))


# -- web ------------------------------------------------------------------------------------------
@app.command()
def web(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="A new folder for the site.")],
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    runtime: Annotated[
        str, typer.Option(help="'cdn', or onnxruntime-web's dist folder to copy in (works offline).")
    ] = "cdn",
    labels: Annotated[Path | None, typer.Option(help="A text file of class names, one per line.")] = None,
    backend: Annotated[str, typer.Option(help="wasm, webgpu or webgl (falls back to wasm).")] = "wasm",
    preflight: Annotated[
        bool, typer.Option(help="Run the model under Node.js with onnxruntime-web before writing.")
    ] = True,
    serve: Annotated[bool, typer.Option(help="Serve the site on 127.0.0.1, cross-origin isolated.")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (0: any free one).")] = 8000,
    scale: Annotated[float | None, typer.Option(help="Image inputs: pixel scale (default 1/255).")] = None,
    mean: Annotated[float | None, typer.Option(help="Image inputs: mean to subtract after scaling.")] = None,
    std: Annotated[float | None, typer.Option(help="Image inputs: std to divide by.")] = None,
) -> None:
    """Write a static page that runs the model in the browser with onnxruntime-web (and serve it).

    With --serve the site is served with the headers that make it cross-origin isolated, so
    WebAssembly runs on several threads; Ctrl-C stops it. --no-preflight skips the Node.js check.

    Example: onnxbridge web model.onnx -o site --labels classes.txt --serve
    """
    preprocess = {k: v for k, v in {"scale": scale, "mean": mean, "std": std}.items() if v is not None}
    try:
        names = [line.strip() for line in labels.read_text().splitlines() if line.strip()] if labels else None
        site = _load_graph(model, "web").to_web(
            output, title=title, runtime=runtime, preprocess=preprocess or None, labels=names, backend=backend,
            preflight="auto" if preflight else False,
        )  # fmt: skip
        server = ob.serve_web(site, port=port) if serve else None
    except (ob.OnnxBridgeError, OSError) as err:
        raise _fail(err) from err
    if server is None:
        print(f"wrote {site}: serve it with `onnxbridge web ... --serve`, or any static server (one thread)")
        return
    # Ctrl-C must stop the server even when this process inherited SIGINT as ignored (a parent
    # that ignores it, such as a test runner's worker): Python then installs no handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"wrote {site}; serving {server.url} (cross-origin isolated; Ctrl-C stops)", flush=True)
    try:
        while True:  # time.sleep is interrupted by Ctrl-C at once
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()


# -- demo -----------------------------------------------------------------------------------------
@app.command()
def demo() -> None:
    """Train models on scikit-learn's bundled digits, export, validate, quantize, benchmark.

    Example: onnxbridge demo
    """
    from onnxbridge.cli import _demo

    try:
        _demo.main()
    except ob.OnnxBridgeError as err:
        raise _fail(err) from err


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except UsageError as err:  # raised outside a command
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
