"""The benchmarks' timing and tables: the package's own, so that every figure is made the same way."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onnxbridge.core._tables import markdown_table as table
from onnxbridge.core._timing import Comparison, compare, per_call

__all__ = ["Comparison", "compare", "per_call", "table"]
