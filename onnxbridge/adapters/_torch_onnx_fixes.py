"""Fixes for torch.onnx's dynamo exporter that onnxbridge applies while it exports, each with its reason.

Each fix is a context manager around ``torch.onnx.export``, restores what it changed, and does
nothing where the library it works around has changed shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["exact_constant_rules"]


@contextlib.contextmanager
def exact_constant_rules() -> Iterator[None]:
    """torch.onnx's graph optimizer without its tolerant no-op rules, while exporting.

    onnxscript's rewriter removes ``x + c``, ``x - c``, ``x * c`` and ``x / c`` when ``c`` is
    *close* to 0 or 1 (``math.isclose`` with ``abs_tol=1e-8``, ``rel_tol=1e-5``): an RMSNorm with
    ``eps=1e-8`` (Helium's) loses its epsilon, and a zero row (a padding token's embedding)
    becomes NaN. onnxscript 0.7.2 offers no switch, so the rules are left out of its default set
    for the duration of the export (nothing else changes; dropout removal stays). Without the
    attributes this relies on (another onnxscript), nothing is changed.
    """
    try:
        from onnxscript import rewriter
        from onnxscript.rewriter.rules.common import _no_op
    except ImportError:
        yield
        return
    default = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    rules = getattr(_no_op, "rules", None)
    if default is None or rules is None:
        yield
        return
    tolerant = set(rules.rules) - {_no_op.dropout_zero_rule, _no_op.dropout_inference_rule}
    rewriter._DEFAULT_REWRITE_RULES = tuple(rule for rule in default if rule not in tolerant)
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = default
