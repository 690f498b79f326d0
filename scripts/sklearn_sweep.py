"""Sweep every scikit-learn estimator through raw skl2onnx and through onnxbridge.

Each estimator scikit-learn lists (``all_estimators``) that builds with default parameters is
fitted on iris (regressors: diabetes) and converted twice:

* **raw skl2onnx**: ``skl2onnx.to_onnx(model, x[:1].astype(float32))``, run by onnxruntime;
* **onnxbridge**: ``ob.export(model, x[:2])`` then ``art.validate(samples=[x])``.

Both are then checked the same way, independently of onnxbridge's own report: labels must agree
on every row of the data set and values (probabilities, scores, predictions, transforms) must
be within rtol=1e-3, atol=1e-4 on every row. Raw skl2onnx is only held to the label for
classifiers without ``predict_proba`` (its second output is not defined against any method).

``python scripts/sklearn_sweep.py`` prints the table; ``--write`` also replaces the table in
docs/sklearn.md, so the docs stay true when versions move.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402
import sklearn  # noqa: E402

import onnxbridge as ob  # noqa: E402
from tests import sklearn_zoo as zoo  # noqa: E402

DOCS = ROOT / "docs" / "sklearn.md"
START, END = "<!-- sweep:start -->", "<!-- sweep:end -->"


def raw(fitted: zoo.Fitted) -> str:
    """'' if raw skl2onnx converts the estimator and agrees with it on every row, else why not."""
    x32 = fitted.x.astype(np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = skl2onnx.to_onnx(fitted.model, x32[:1])
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x32})
    except Exception as err:  # noqa: BLE001 - the reason is the result
        return f"{type(err).__name__}: {str(err).splitlines()[0][:100]}"
    got = [_from_zipmap(v, fitted.model) if isinstance(v, list) else v for v in got]
    labels_only = fitted.kind == "classifier" and not hasattr(fitted.model, "predict_proba")
    return zoo.agrees(got, zoo.expected(fitted), labels_only=labels_only)


def _from_zipmap(rows: list[dict[Any, float]], model: Any) -> np.ndarray:
    return np.array([[row[c] for c in model.classes_] for row in rows])


def bridge(fitted: zoo.Fitted) -> tuple[str, str]:
    """(outcome, detail): outcome is 'yes', 'unsupported', 'error' (typed), 'crash' (untyped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            art = ob.export(fitted.model, fitted.x[:2])
            art.validate(samples=[fitted.x])
            out = art.session(providers=["cpu"]).run(fitted.x)
    except ob.UnsupportedModelError as err:
        return "unsupported", str(err).splitlines()[0]
    except ob.ValidationError as err:
        return "error", f"ValidationError: {'; '.join(err.report.failures)[:200]}"
    except ob.OnnxBridgeError as err:
        return "error", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    except Exception as err:  # noqa: BLE001 - a raw crash is what the sweep looks for
        return "crash", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    problem = zoo.agrees(list(out.values()), zoo.expected(fitted))
    if problem:
        return "wrong", f"validate() passed but {problem}"
    how = "; ".join(n for n in art.export_notes if not n.startswith("precision float32"))
    return "yes", how


def sweep(only: set[str] | None = None) -> list[dict[str, str]]:
    """Raw skl2onnx first, for every estimator: onnxbridge registers converters with skl2onnx."""
    rows, fitted = [], {}
    for name, cls in zoo.catalogue():
        if only and name not in only:
            continue
        try:
            fitted[name] = zoo.fit(name, cls)
        except zoo.NotFittable as err:
            rows.append({"name": name, "kind": zoo.kind_of(cls()), "raw": "-", "ob": "not fitted", "detail": str(err)})
            continue
        problem = raw(fitted[name])
        rows.append({"name": name, "kind": fitted[name].kind, "raw": "no" if problem else "yes", "raw_why": problem})
    for row in rows:
        if row["name"] in fitted:
            row["ob"], row["detail"] = bridge(fitted[row["name"]])
            print(
                f"{row['name']:40s} raw={row['raw']:3s} onnxbridge={row['ob']:11s} {row['detail'][:90]}",
                file=sys.stderr,
            )
    return sorted(rows, key=lambda r: r["name"])


def render(rows: list[dict[str, str]]) -> str:
    """The markdown table and its totals."""
    counts = collections.Counter(r["ob"] for r in rows)
    fitted = [r for r in rows if r["ob"] != "not fitted"]
    raw_yes = {r["name"] for r in fitted if r["raw"] == "yes"}
    ob_yes = {r["name"] for r in fitted if r["ob"] == "yes"}
    lines = [
        f"Swept {time.strftime('%Y-%m-%d')} with scikit-learn {sklearn.__version__}, skl2onnx "
        f"{skl2onnx.__version__}, onnxruntime {ort.__version__} (`python scripts/sklearn_sweep.py --write`): "
        f"{len(rows)} estimators build with default parameters, {len(fitted)} fit on the bundled data.",
        "",
        f"* **onnxbridge exports and validates {len(ob_yes)}**; raw `skl2onnx.to_onnx` converts "
        f"{len(raw_yes)} correctly (every row agrees); onnxbridge handles {len(ob_yes - raw_yes)} that raw "
        f"skl2onnx does not, and misses {len(raw_yes - ob_yes)} that it handles.",
        f"* {counts['unsupported']} refused with `UnsupportedModelError` (the reason is in the table), "
        f"{counts['error']} other typed errors, {counts['wrong']} wrong answers, {counts['crash']} raw crashes.",
        "",
        "| estimator | kind | raw skl2onnx | onnxbridge | how, or why not |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        detail = (r["detail"] or "").replace("|", "\\|")
        lines.append(f"| `{r['name']}` | {r['kind']} | {r['raw']} | {r['ob']} | {detail} |")
    return "\n".join(lines)


def main() -> None:
    """Print the sweep (and with --write, put it in docs/sklearn.md)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in docs/sklearn.md")
    parser.add_argument("--only", help="comma-separated estimator names (a quick look; not with --write)")
    args = parser.parse_args()
    text = render(sweep(set(args.only.split(",")) if args.only else None))
    print(text)
    if args.write:
        page = DOCS.read_text()
        head, rest = page.split(START, 1)
        DOCS.write_text(f"{head}{START}\n{text}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
