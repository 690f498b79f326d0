"""The code in README.md and docs/ runs: every ```python block, page by page, in order.

Blocks fenced as ```py are illustrative fragments and are not run.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from onnxbridge.exporting._registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


SLOW_PAGES = {"text-generation.md", "quantization.md", "transformers.md"}  # they export decoders, quantize


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p
        for p in PAGES
        if BLOCK.search(p.read_text())
    ],
    ids=lambda p: p.name,
)
def test_python_blocks_in_page_run(page, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # pages save files; keep them out of the checkout
    code = "\n".join(BLOCK.findall(page.read_text()))
    frameworks = set(default_registry.frameworks())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, str(page), "exec"), {"__name__": "__main__"})
    finally:
        for name in set(default_registry.frameworks()) - frameworks:  # pages may register adapters
            default_registry.unregister(name)


def test_docs_index_links_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
