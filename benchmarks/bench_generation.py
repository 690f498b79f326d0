"""Text generation benchmark: tokens/s of a small decoder in onnxruntime vs transformers, and int4/int8.

Run with ``python benchmarks/bench_generation.py [--train-steps N] [--threads N]``. Not part of
the tests.

The model is a Llama-style decoder of 6 layers, hidden size 512, vocabulary 32000, built from a
config (nothing is downloaded) and trained for a few hundred steps on the bytes of Python's own
standard library source, so that its predictions are confident the way a trained model's are
(random weights give flat logits, where any rounding flips a greedy token and agreement figures
mean nothing).

Speed: batch 1, a 32-token prompt, 64 new tokens, greedy. Every variant generates once per round,
in an order that rotates between rounds; the table gives the median tokens/s and the median of
the per-round ratio to transformers (eager PyTorch with its KV cache, ``model.generate``). Same
thread count for PyTorch and onnxruntime.

Quantization: file size of the saved model, tokens/s ratio against the float ONNX model, and
greedy agreement with it over 24 prompts (32 new tokens each) that were not used for training
figures: the share of prompts whose tokens are all identical, and the mean share of tokens
generated before the first difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort
import torch
import transformers
from _timing import table

import onnxbridge as ob

warnings.filterwarnings("ignore")
PROMPT, NEW = 32, 64


def corpus() -> np.ndarray:
    """Bytes of the standard library's Python source: real text with structure, no download."""
    root = Path(statistics.__file__).parent
    data = b"".join(p.read_bytes() for p in sorted(root.glob("*.py"))[:120])
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


def train(model: torch.nn.Module, tokens: np.ndarray, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    held_out = len(tokens) * 9 // 10  # the last tenth is for the prompts
    model.train()
    loss = float("nan")
    for step in range(steps):
        starts = rng.integers(0, held_out - 65, size=8)
        batch = torch.from_numpy(np.stack([tokens[s : s + 64] for s in starts]))
        out = model(input_ids=batch, labels=batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        loss = float(out.loss)
        if step % 50 == 0:
            print(f"  training step {step}: loss {loss:.3f}", flush=True)
    model.eval()
    return loss


def prompts(tokens: np.ndarray, count: int, length: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    start = len(tokens) * 9 // 10
    picks = rng.integers(start, len(tokens) - length - 1, size=count)
    return [tokens[p : p + length][None, :] for p in picks]


def session(art: ob.Artifact, threads: int) -> ob.Session:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return art.session(providers=["cpu"], threads=threads, options=options)


def no_cache_loop(sess: ob.Session, prompt: np.ndarray, new: int) -> np.ndarray:
    """Greedy generation without a cache: the whole sequence runs again for every token."""
    ids = prompt
    for _ in range(new):
        logits = sess.run({"input_ids": ids, "attention_mask": np.ones_like(ids)})["logits"]
        ids = np.concatenate([ids, logits[:, -1].argmax(-1)[:, None]], axis=1)
    return ids


def file_size(art: ob.Artifact) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = art.save(Path(folder) / "model.onnx", reference=False)
        return sum(f.stat().st_size for f in path.parent.iterdir())


def agreement(
    a: ob.Artifact, b: ob.Artifact, sa: ob.Session, sb: ob.Session, chosen: list[np.ndarray]
) -> tuple[float, float]:
    identical, shares = 0, []
    for prompt in chosen:
        x = a.generate(prompt, max_new_tokens=32, eos_token_id=[], session=sa)[0, prompt.shape[1] :]
        y = b.generate(prompt, max_new_tokens=32, eos_token_id=[], session=sb)[0, prompt.shape[1] :]
        differs = np.flatnonzero(x != y)
        identical += not differs.size
        shares.append((differs[0] if differs.size else 32) / 32)
    return identical / len(chosen), float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    config = transformers.LlamaConfig(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    tokens = corpus()
    print(
        f"decoder: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; training on {len(tokens)} bytes"
    )
    start = time.perf_counter()
    loss = train(model, tokens, args.train_steps)
    print(f"trained {args.train_steps} steps in {time.perf_counter() - start:.0f} s, final loss {loss:.3f}")
    torch.set_num_threads(args.threads)  # training used every core; measurements use the same count for both

    start = time.perf_counter()
    art = ob.export(model, task="text-generation")
    print(f"export with cache: {time.perf_counter() - start:.0f} s")
    print(art.validate())
    model.config.use_cache = False
    sample = {"input_ids": torch.from_numpy(prompts(tokens, 1, 16)[0])}
    sample["attention_mask"] = torch.ones_like(sample["input_ids"])
    flat = ob.export(model, sample, {n: {0: "batch", 1: "sequence"} for n in sample}, task="feature-extraction")
    model.config.use_cache = True
    int8 = art.quantize("int8-weight")
    int4 = art.quantize("int4")

    prompt = prompts(tokens, 1, PROMPT)[0]
    sessions = {
        name: session(a, args.threads) for name, a in (("float", art), ("int8", int8), ("int4", int4), ("flat", flat))
    }
    with torch.no_grad():
        want = model.generate(torch.from_numpy(prompt), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False).numpy()
    got = art.generate(prompt, max_new_tokens=NEW, eos_token_id=[], session=sessions["float"])
    print(f"greedy tokens of onnxruntime and transformers identical over {NEW} tokens: {bool((got == want).all())}")

    def hf() -> None:
        with torch.no_grad():
            model.generate(torch.from_numpy(prompt), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)

    runs = {
        "transformers eager, with cache": hf,
        "onnxruntime, with cache": lambda: art.generate(
            prompt, max_new_tokens=NEW, eos_token_id=[], session=sessions["float"]
        ),
        "onnxruntime, without cache": lambda: no_cache_loop(sessions["flat"], prompt, NEW),
        "onnxruntime int8-weight, with cache": lambda: int8.generate(
            prompt, max_new_tokens=NEW, eos_token_id=[], session=sessions["int8"]
        ),
        "onnxruntime int4, with cache": lambda: int4.generate(
            prompt, max_new_tokens=NEW, eos_token_id=[], session=sessions["int4"]
        ),
    }
    names = list(runs)
    for fn in runs.values():
        fn()  # warm-up
    seconds: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        spent = {}
        for name in order:
            t = time.perf_counter()
            runs[name]()
            spent[name] = time.perf_counter() - t
            time.sleep(0.05)
        for name in names:
            seconds[name].append(spent[name])
            ratios[name].append(spent[names[0]] / spent[name])
    rows = [
        [name, f"{NEW / statistics.median(seconds[name]):.1f}", f"{statistics.median(ratios[name]):.2f}x"]
        for name in names
    ]
    print(
        f"\nbatch 1, prompt {PROMPT}, {NEW} new tokens, greedy, {args.threads} thread(s), median of {args.rounds} interleaved rounds"
    )
    print(table(["variant", "tokens/s", "vs transformers eager"], rows))

    chosen = prompts(tokens, 24, 24)
    base = file_size(art)
    rows = []
    for name, q in (("int8-weight", int8), ("int4", int4)):
        same, share = agreement(
            art, q, sessions["float"], sessions["int8" if name == "int8-weight" else "int4"], chosen
        )
        label = "onnxruntime int8-weight, with cache" if name == "int8-weight" else "onnxruntime int4, with cache"
        speed = statistics.median(
            r_q / r_f for r_q, r_f in zip(ratios[label], ratios["onnxruntime, with cache"], strict=True)
        )
        rows.append(
            [
                name,
                f"{file_size(q) / 1e6:.1f}",
                f"{file_size(q) / base:.3f}x",
                f"{speed:.2f}x",
                f"{same:.0%}",
                f"{share:.0%}",
                f"{q.quantization.generation.min_logits_cosine:.4f}",
            ]
        )
    print(
        f"\nweight-only quantization vs the float ONNX model ({base / 1e6:.1f} MB), greedy over {len(chosen)} held-out prompts x 32 tokens"
    )
    print(
        table(
            [
                "mode",
                "file MB",
                "size ratio",
                "tokens/s ratio",
                "prompts identical",
                "tokens before first difference",
                "min logits cosine (report)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
