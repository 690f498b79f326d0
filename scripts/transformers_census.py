"""Census of every causal-LM and seq2seq type in transformers: does onnxbridge export, validate and generate it?

Each type in ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` and ``MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES``
is built from its default config shrunk by ``tests/hf_zoo.py`` (random weights, nothing
downloaded; weight matrices the model initialises to zero, such as AFMoE's router, filled at
random, since a zero router ties every expert), in a process of its own with a time limit, and
goes through:

1. **transformers itself**: ``model.generate(do_sample=False)`` of 8 tokens from two left-padded
   prompts (seq2seq: from two encoder inputs). A type whose shrunk config does not build or
   generate in transformers is counted apart (``not-built``, with transformers' error): the
   shrinking, or transformers, failed before onnxbridge had anything to export.
2. **onnxbridge**: ``ob.export(model)`` (the model's default ``use_cache`` and generation
   config), ``art.validate()``, then ``art.generate(...)`` compared token for token with step 1.

Outcomes: ``ok`` (validated and token-exact), ``validate-fail`` (validation caught a
difference), ``silent-wrong`` (validation passed, tokens differ: the outcome that must never
happen), ``refused`` (a typed ``OnnxBridgeError`` naming its cause), ``crash`` (any other
exception, or the time limit), ``not-built`` (step 1 failed), ``transformers-inconsistent``
(transformers' own ``generate()`` gives the unpadded prompt other tokens alone than in the batch:
its reference is wrong, as RWKV's one-token steps broadcast the batch against itself). The last
two are counted apart; the table also gives the share with the inconsistent ones as failures.

``python scripts/transformers_census.py`` prints the table; ``--write`` also replaces it in
docs/transformers.md; ``--types a,b`` runs some types only; ``--jobs N`` runs N at once.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "transformers.md"
START, END = "<!-- census:start -->", "<!-- census:end -->"
STEPS = 8
TIMEOUT = 420
BUILT = "built in transformers"
# Types among these mappings that Optimum's ONNX exporter lists (optimum-onnx's docs, main branch,
# docs/source/onnx/overview.mdx); its newest release on PyPI (0.1.0) requires transformers < 4.58.
OPTIMUM = frozenset(
    [
        "arcee",
        "bart",
        "blenderbot",
        "blenderbot-small",
        "bloom",
        "codegen",
        "cohere",
        "deepseek_v3",
        "falcon",
        "gemma",
        "gemma2",
        "glm",
        "gpt2",
        "gpt_bigcode",
        "gptj",
        "gpt_neo",
        "gpt_neox",
        "granite",
        "helium",
        "llama",
        "longt5",
        "m2m_100",
        "marian",
        "mbart",
        "mistral",
        "mt5",
        "nemotron",
        "olmo",
        "olmo2",
        "opt",
        "pegasus",
        "phi",
        "phi3",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "smollm3",
        "stablelm",
        "t5",
        "whisper",
        "speech_to_text",
    ]
)
OUTCOMES = ("ok", "validate-fail", "silent-wrong", "refused", "crash", "not-built", "transformers-inconsistent")
APART = ("not-built", "transformers-inconsistent")  # transformers gave nothing sound to compare with


def types() -> list[tuple[str, str]]:
    """(mapping, model type) for every type in the two mappings, causal LMs first."""
    from transformers.models.auto import modeling_auto

    found = [("causal-lm", t) for t in sorted(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)]
    found += [("seq2seq", t) for t in sorted(modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)]
    return found


def one(kind: str, model_type: str) -> dict[str, Any]:
    """Run one type (in this process) and return its row."""
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    import transformers

    import onnxbridge as ob
    from tests import hf_zoo

    row: dict[str, Any] = {"mapping": kind, "type": model_type}
    auto = transformers.AutoModelForCausalLM if kind == "causal-lm" else transformers.AutoModelForSeq2SeqLM
    started = time.perf_counter()
    try:
        torch.manual_seed(0)
        config = hf_zoo.tiny_config(model_type)
        model = hf_zoo.trained_like(auto.from_config(config).eval())
        row["class"] = type(model).__name__
        vocab = int(config.get_text_config().vocab_size)
        ids, mask = hf_zoo.prompts(vocab)
        with torch.no_grad():  # seq2seq: the prompts are the encoder's input
            want = model.generate(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                max_new_tokens=STEPS,
                do_sample=False,
                num_beams=1,
            ).numpy()
    except Exception as err:  # noqa: BLE001 - the reason is the result
        row.update(outcome="not-built", detail=f"{type(err).__name__}: {_line(err)}")
        return row
    with torch.no_grad():  # the unpadded prompt alone: transformers must give it the tokens it gave it in the batch
        alone = model.generate(
            input_ids=torch.from_numpy(ids[1:]),
            attention_mask=torch.from_numpy(mask[1:]),
            max_new_tokens=STEPS,
            do_sample=False,
            num_beams=1,
        ).numpy()
    length = min(alone.shape[1], want.shape[1])
    if not np.array_equal(alone[0, :length], want[1, :length]):
        detail = f"transformers' own generate() gives the unpadded prompt {alone[0].tolist()} alone, {want[1].tolist()} in a batch"
        row.update(outcome="transformers-inconsistent", detail=detail)
        return row
    print(BUILT, flush=True)  # tells the parent a death after this is onnxbridge's, not the build's
    try:
        art = ob.export(model)
        row["export_s"] = round(time.perf_counter() - started, 1)
        art.validate()
    except Exception as err:  # noqa: BLE001 - the kind of failure is the result
        return {**row, **_failure(ob, err)}
    try:
        got = art.generate(ids, mask, max_new_tokens=STEPS, num_beams=1, do_sample=False)
    except Exception as err:  # noqa: BLE001
        return {**row, **_failure(ob, err, "generate: ")}
    if kind == "seq2seq" and got.shape[1] == want.shape[1] + 1:
        got = got[:, 1:]  # transformers returns some seq2seq sequences without the start token
    same = got.shape == want.shape and bool(np.array_equal(got, want))
    row.update(outcome="ok" if same else "silent-wrong", detail="" if same else f"{got.tolist()} vs {want.tolist()}")
    row["notes"] = (
        [n for n in art.export_notes if "experts" in n or "cache" in n][:2] if hasattr(art, "export_notes") else []
    )
    return row


def _failure(ob: Any, err: BaseException, stage: str = "") -> dict[str, str]:
    """The outcome an exception stands for: validation caught it, a typed refusal, or a crash."""
    if isinstance(err, ob.ValidationError):
        return {"outcome": "validate-fail", "detail": stage + _line(err, 2)}
    outcome = "refused" if isinstance(err, ob.OnnxBridgeError) else "crash"
    return {"outcome": outcome, "detail": f"{stage}{type(err).__name__}: {_line(err)}"}


def _line(err: BaseException, lines: int = 1) -> str:
    text = " / ".join(part.strip() for part in str(err).strip().splitlines()[:lines])
    return text[:300]


def run(kind: str, model_type: str) -> dict[str, Any]:
    """One type in a child process, under the time limit."""
    command = [sys.executable, __file__, "--one", f"{kind}:{model_type}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired as late:
        output = late.stdout.decode() if isinstance(late.stdout, bytes) else (late.stdout or "")
        outcome = "crash" if BUILT in output else "not-built"
        return {"mapping": kind, "type": model_type, "outcome": outcome, "detail": f"over {TIMEOUT} s"}
    rows = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not rows:
        tail = (done.stderr.strip().splitlines() or [f"no output, exit code {done.returncode}"])[-1]
        outcome = "crash" if BUILT in done.stdout else "not-built"  # killed while building (memory) is not ours
        return {"mapping": kind, "type": model_type, "outcome": outcome, "detail": f"process died: {tail[:200]}"}
    row = json.loads(rows[-1])
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Totals, the target, and one line per type that is not ok."""
    import transformers

    for row in rows:  # the name of this outcome before 2026-12-03
        row["outcome"] = "not-built" if row["outcome"] == "transformers-cannot" else row["outcome"]
    counts = collections.Counter(row["outcome"] for row in rows)
    buildable = [row for row in rows if row["outcome"] not in APART]
    ok = counts["ok"]
    share = ok / len(buildable) if buildable else 0.0
    every = len(types())
    partial = (
        [
            f"**Partial run: {len(rows)} of the {every} types, alphabetically from the start of the causal-LM mapping.**",
            "",
        ]
        if len(rows) < every
        else []
    )
    lines = [
        *partial,
        f"transformers {transformers.__version__}, {len(rows)} types "
        f"({sum(r['mapping'] == 'causal-lm' for r in rows)} causal-LM, {sum(r['mapping'] == 'seq2seq' for r in rows)} "
        f"seq2seq), built by `tests/hf_zoo.py`, {STEPS} greedy tokens from two left-padded prompts.",
        "",
        "| outcome | types |",
        "|---|---|",
        *(f"| {outcome} | {counts[outcome]} |" for outcome in OUTCOMES),
        "",
        f"**{ok} of the {len(buildable)} types built and generating consistently in transformers ({share:.1%}) export, "
        f"validate and generate token-exact; {counts['silent-wrong']} silent wrong tokens; {counts['crash']} crashes.**"
        + (
            f" Counting the {counts['transformers-inconsistent']} type(s) whose batched generation transformers itself "
            f"gets wrong as failures: {ok} of {len(buildable) + counts['transformers-inconsistent']} "
            f"({ok / (len(buildable) + counts['transformers-inconsistent']):.1%})."
            if counts["transformers-inconsistent"]
            else ""
        ),
        "",
        "| type | mapping | outcome | cause |",
        "|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (OUTCOMES.index(r["outcome"]), r["type"])):
        if row["outcome"] != "ok":
            detail = str(row.get("detail", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {row['type']} | {row['mapping']} | {row['outcome']} | {detail} |")
    working = sorted({row["type"] for row in rows if row["outcome"] == "ok"})
    listed = sorted({row["type"] for row in rows} & OPTIMUM)
    both = [t for t in listed if t in working]
    lines += [
        "",
        f"Token-exact ({len(working)}): " + ", ".join(f"`{t}`" for t in working) + ".",
        "",
        f"Beside Optimum: its ONNX exporter lists {len(listed)} of these types (optimum-onnx's docs, main branch; its "
        f"newest PyPI release, 0.1.0, requires transformers < 4.58). onnxbridge is token-exact on {len(both)} of them"
        + (f" (not on {', '.join(f'`{t}`' for t in listed if t not in working)})" if len(both) < len(listed) else "")
        + f", and on {len(set(working) - OPTIMUM)} types Optimum does not list.",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    """Replace the table between the census markers in docs/transformers.md."""
    docs = DOCS.read_text()
    head, rest = docs.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    """Run the census (or one type, in a child process) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="replace the table in docs/transformers.md")
    parser.add_argument("--types", help="comma-separated model types (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="types run at once (default 2)")
    parser.add_argument("--results", default=str(ROOT / "build" / "census.jsonl"), help="rows, one JSON per line")
    parser.add_argument(
        "--from-results",
        help="render the table from results files instead of running (comma-separated; a later file's row for a "
        "type replaces an earlier one's, so a run of some types updates a full one)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, model_type = args.one.split(":", 1)
        print(json.dumps(one(kind, model_type)), flush=True)
        return
    if args.from_results:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for path in args.from_results.split(","):
            for line in Path(path).read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    merged[(row["mapping"], row["type"])] = row
        text = table(list(merged.values()))
        print(text)
        if args.write:
            write(text)
        return
    wanted = set(args.types.split(",")) if args.types else None
    todo = [(k, t) for k, t in types() if wanted is None or t in wanted]
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool, results.open("w") as out:
        for row in pool.map(lambda kt: run(*kt), todo):
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(
                f"{row['type']:28} {row['mapping']:9} {row['outcome']:19} {str(row.get('detail', ''))[:110]}",
                flush=True,
            )
    text = table(rows)
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    main()
