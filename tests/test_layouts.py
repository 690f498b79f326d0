"""save(layout=...): folders that onnxruntime-genai, transformers.js and Optimum load as they are.

Each folder is loaded in the real runtime and its greedy tokens compared with transformers':
onnxruntime-genai from PyPI, transformers.js under Node.js (``make transformers-js`` installs it
and points ``ONNXBRIDGE_TRANSFORMERS_JS`` at it; locally the test skips without it, in CI it runs).
Optimum's releases require transformers < 4.58, so its folder is checked against the file names
Optimum documents and read back with transformers' own loaders.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from tests import hf_zoo

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPTS = ([[7, 8, 9]], [[5, 9, 17, 33, 3, 61, 100, 4, 250, 12, 70]], [[11]])  # short ones included
NEW = 12
TRANSFORMERS_JS = Path(os.environ.get("ONNXBRIDGE_TRANSFORMERS_JS", "node_modules/@huggingface/transformers"))


@functools.cache
def saved_llama(root: str) -> tuple[object, ob.Artifact, Path]:
    """A tiny Llama (grouped-query attention) saved with its tokenizer, loaded back and exported."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=hf_zoo.VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    )
    source = Path(root) / "hf"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(source)
    hf_zoo.tiny_tokenizer(hf_zoo.VOCAB).save_pretrained(source)
    model = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    return model, ob.export(model), source


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return saved_llama(str(tmp_path_factory.mktemp("llama")))


def hf_tokens(model, prompt) -> list[int]:
    ids = torch.tensor(prompt)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False)
    return out[0].tolist()


@pytest.mark.parametrize("graph", ["fused", "fallback"])
def test_genai_folder_runs_in_onnxruntime_genai_with_transformers_greedy_tokens(llama, tmp_path, graph):
    og = pytest.importorskip("onnxruntime_genai")
    model, art, _ = llama
    assert art.fallback is not None  # the default export fuses the decoder
    folder = (art if graph == "fused" else art.fallback).save(tmp_path / "genai", layout="genai")
    assert {"genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]
    assert (decoder["num_hidden_layers"], decoder["num_key_value_heads"], decoder["head_size"]) == (2, 2, 16)
    assert decoder["inputs"]["position_ids"] == "position_ids"
    # The fused graph's GroupQueryAttention writes into a context-long buffer; the fallback grows its
    # cache by Concat, so genai must not pre-allocate its present at full length.
    assert config["search"]["past_present_share_buffer"] is (graph == "fused")
    assert (config["model"]["eos_token_id"], config["model"]["context_length"]) == (2, 128)
    runtime = og.Model(str(folder))
    for prompt in PROMPTS:
        params = og.GeneratorParams(runtime)
        params.set_search_options(max_length=len(prompt[0]) + NEW, do_sample=False)
        generator = og.Generator(runtime, params)
        generator.append_tokens(np.array(prompt, dtype=np.int64))
        while not generator.is_done():
            generator.generate_next_token()
        got = list(generator.get_sequence(0))
        want = hf_tokens(model, prompt)
        assert got == (want[:-1] if want[-1] == 2 and len(want) > len(got) else want)  # genai leaves out EOS
    assert og.Tokenizer(runtime).encode("w5 w6") is not None  # the tokenizer files load in genai too


def _node_generate(root: Path, model_id: str, dtype: str) -> list[list[int]]:
    node, entry = shutil.which("node"), TRANSFORMERS_JS / "dist" / "transformers.node.mjs"
    if node is None or not entry.is_file():
        pytest.skip("Node.js or transformers.js missing (make transformers-js sets ONNXBRIDGE_TRANSFORMERS_JS)")
    script = root / "generate.mjs"
    script.write_text(
        f"import {{ AutoModelForCausalLM, Tensor, env }} from {json.dumps(entry.resolve().as_uri())};\n"
        "const [root, id, dtype, prompts, steps] = process.argv.slice(2);\n"
        "env.localModelPath = root; env.allowRemoteModels = false; env.allowLocalModels = true;\n"
        "const model = await AutoModelForCausalLM.from_pretrained(id, { dtype, device: 'cpu' });\n"
        "const results = [];\n"
        "for (const prompt of JSON.parse(prompts)) {\n"
        "  const n = prompt.length;\n"
        "  const ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, n]);\n"
        "  const mask = new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);\n"
        "  const out = await model.generate({ input_ids: ids, attention_mask: mask,\n"
        "    max_new_tokens: Number(steps), do_sample: false });\n"
        "  results.push(Array.from(out.data, Number));\n"
        "}\n"
        "console.log(JSON.stringify(results));\n"
    )
    prompts = json.dumps([p[0] for p in PROMPTS])
    done = subprocess.run(
        [node, str(script), str(root), model_id, dtype, prompts, str(NEW)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_transformers_js_folder_runs_under_node_fp32_and_int4_side_by_side(llama, tmp_path):
    model, art, _ = llama
    # fp32 with its weights in external data, as a model past 2 GB is saved
    folder = art.save(tmp_path / "tiny-llama", layout="transformers.js", external_data=True)
    q4 = art.quantize("int4")
    q4.save(folder, layout="transformers.js")  # the variant joins the same folder under transformers.js's name
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["model.onnx", "model.onnx_data", "model_q4.onnx"]
    settings = json.loads((folder / "config.json").read_text())["transformers.js_config"]
    assert settings == {"use_external_data_format": {"model.onnx": 1}}  # transformers.js reads it only when listed
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert _node_generate(tmp_path, "tiny-llama", "fp32") == [hf_tokens(model, p) for p in PROMPTS]
    # transformers.js runs the int4 graph as onnxbridge's own generate() does.
    expected = [q4.generate(np.array(p), max_new_tokens=NEW)[0].tolist() for p in PROMPTS]
    got = _node_generate(tmp_path, "tiny-llama", "q4")
    assert [g[: len(e)] for g, e in zip(got, expected, strict=True)] == expected


def test_optimum_folder_has_the_files_optimum_documents_and_transformers_reads_them(llama, tmp_path):
    model, art, _ = llama
    folder = art.save(tmp_path / "optimum", layout="optimum")
    # ORTModelForCausalLM.from_pretrained(folder): model.onnx (ONNX_WEIGHTS_NAME) beside config.json.
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    config = transformers.AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.architectures) == ("llama", ["LlamaForCausalLM"])
    assert config.num_key_value_heads == 2
    assert transformers.GenerationConfig.from_pretrained(folder).eos_token_id == model.generation_config.eos_token_id
    assert transformers.AutoTokenizer.from_pretrained(folder)("w5 w6")["input_ids"]
    loaded = ob.load(folder / "model.onnx")
    assert loaded.generate(np.array(PROMPTS[0]), max_new_tokens=NEW)[0].tolist() == hf_tokens(model, PROMPTS[0])


def test_a_loaded_file_keeps_the_configs_so_it_saves_layouts_too(llama, tmp_path):
    _, art, _ = llama
    loaded = ob.load(art.save(tmp_path / "model.onnx"))
    folder = loaded.save(tmp_path / "again", layout="optimum")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"


def test_a_tokenizer_passed_to_save_is_written_for_a_model_built_in_memory(tmp_path):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config("llama")).eval()
    art = ob.export(model)
    with pytest.warns(UserWarning, match="No tokenizer files"):
        bare = art.save(tmp_path / "bare", layout="genai")
    assert "tokenizer.json" not in {p.name for p in bare.iterdir()}
    folder = art.save(tmp_path / "with", layout="genai", tokenizer=hf_zoo.tiny_tokenizer(hf_zoo.VOCAB))
    assert "tokenizer.json" in {p.name for p in folder.iterdir()}


def test_genai_refuses_a_graph_its_decoder_loop_cannot_drive_and_writes_nothing(tmp_path):
    from tests import models

    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch")
    with pytest.raises(ob.UnsupportedSettingError, match="attention keys and values only"):
        art.save(tmp_path / "genai", layout="genai")
    assert not (tmp_path / "genai").exists()
    with pytest.raises(ob.UnsupportedSettingError, match=r"config\.json"):
        art.save(tmp_path / "tjs", layout="transformers.js")
    assert not (tmp_path / "tjs").exists()
    with pytest.raises(ob.InputError, match="tokenizer= goes with layout"):
        art.save(tmp_path / "m.onnx", tokenizer=object())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.text(max_size=20).filter(lambda s: s not in ("genai", "transformers.js", "optimum")))
def test_any_other_layout_is_refused_naming_the_layouts_and_writes_nothing(llama, tmp_path_factory, layout):
    _, art, _ = llama
    target = tmp_path_factory.mktemp("layout") / "out"
    with pytest.raises(ob.InputError, match=r"'genai', 'transformers\.js', 'optimum'"):
        art.save(target, layout=layout)
    assert not target.exists()


def test_the_cli_writes_a_genai_folder_from_a_transformers_folder(llama, tmp_path):
    _, _, source = llama
    output = tmp_path / "genai"
    done = subprocess.run(
        [sys.executable, "-m", "onnxbridge", "export", str(source), "-o", str(output), "--layout", "genai", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["layout"], summary["validation"]["ok"]) == ("genai", True)
    assert {"model.onnx", "genai_config.json", "tokenizer.json"} <= {p.name for p in output.iterdir()}
    bad = subprocess.run(
        [sys.executable, "-m", "onnxbridge", "export", str(source), "-o", str(tmp_path / "x"), "--layout", "onnx"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "is not a folder layout" in bad.stderr
