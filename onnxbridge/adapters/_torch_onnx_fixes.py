"""Fixes for torch.onnx's dynamo exporter that onnxbridge applies while it exports, each with its reason.

Each fix is a context manager around ``torch.onnx.export``, restores what it changed, and does
nothing where the library it works around has changed shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["complex_unsqueeze", "exact_constant_rules", "translations"]


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


@contextlib.contextmanager
def complex_unsqueeze() -> Iterator[None]:
    """A rule in transformers' FX node fixes for ONNX: ``unsqueeze`` of a complex tensor through its real view.

    onnxscript has no complex ``unsqueeze``; transformers' ONNX patches cover ``torch.unsqueeze``
    calls but not indexing with ``None`` (``freqs_cis[:, :, None, :]``, Llama 4's rotary
    embedding), which traces to the same ``aten.unsqueeze``. The rule rewrites it as
    ``view_as_complex(unsqueeze(view_as_real(x), dim))``, ops onnxscript translates for complex
    tensors. It is registered in transformers' ``_FX_NODE_FIXES["onnx"]`` for the duration of
    the export only (transformers' ``apply_patches("onnx")`` runs those fixes after torch.onnx
    decomposes the program); without that registry, nothing is changed.
    """
    try:
        import torch
        from transformers.exporters import utils
    except ImportError:
        yield
        return
    fixes = getattr(utils, "_FX_NODE_FIXES", None)
    if not isinstance(fixes, dict):
        yield
        return

    def fix(gm: Any, node: Any) -> bool:
        if node.target is not torch.ops.aten.unsqueeze.default:
            return False
        source = node.args[0]
        value = source.meta.get("val") if isinstance(source, torch.fx.Node) else None
        if value is None or not value.is_complex():
            return False
        dim = int(node.args[1])
        dim = dim if dim >= 0 else dim + value.dim() + 1  # of the complex result, whose rank is one more
        with gm.graph.inserting_before(node):
            real = gm.graph.call_function(torch.ops.aten.view_as_real.default, (source,))
            real.meta["val"] = torch.view_as_real(value)
            grown = gm.graph.call_function(torch.ops.aten.unsqueeze.default, (real, dim))
            grown.meta["val"] = real.meta["val"].unsqueeze(dim)
            back = gm.graph.call_function(torch.ops.aten.view_as_complex.default, (grown,))
            back.meta["val"] = node.meta.get("val")
        node.replace_all_uses_with(back)
        gm.graph.erase_node(node)
        return True

    registered = fixes.setdefault("onnx", [])
    registered.append(fix)
    try:
        yield
    finally:
        registered.remove(fix)


def translations() -> dict[Any, Any]:
    """ONNX translations for ops torchlib has none for, as ``torch.onnx.export``'s ``custom_translation_table``.

    * ``prims.erf_inv`` (``torch.erfinv``; Gemma 3n's activation sparsity takes a normal
      quantile): Giles' single-precision approximation, refined by one Newton step on ONNX's
      ``Erf``, which brings it to float32 precision.
    """
    try:
        import torch
        from onnxscript.onnx_opset import opset18
    except ImportError:
        return {}
    op: Any = opset18  # values are traced symbols: onnxscript's own stubs type them as tensors of one dtype

    def erf_inv(self: Any) -> Any:
        one = op.CastLike(op.Constant(value_float=1.0), self)
        w = op.Neg(op.Log(op.Mul(op.Sub(one, self), op.Add(one, self))))
        central = op.Sub(w, op.CastLike(op.Constant(value_float=2.5), self))
        tail = op.Sub(op.Sqrt(w), op.CastLike(op.Constant(value_float=3.0), self))

        def poly(x: Any, coefficients: tuple[float, ...]) -> Any:
            p = op.CastLike(op.Constant(value_float=coefficients[0]), self)
            for c in coefficients[1:]:
                p = op.Add(op.Mul(p, x), op.CastLike(op.Constant(value_float=c), self))
            return p

        near = poly(central, _ERFINV_CENTRAL)
        far = poly(tail, _ERFINV_TAIL)
        small = op.Less(w, op.CastLike(op.Constant(value_float=5.0), self))
        x = op.Mul(op.Where(small, near, far), self)
        # One Newton step: x -= (erf(x) - y) / (2 / sqrt(pi) * exp(-x^2))
        slope = op.Mul(op.CastLike(op.Constant(value_float=1.1283791670955126), self), op.Exp(op.Neg(op.Mul(x, x))))
        return op.Sub(x, op.Div(op.Sub(op.Erf(x), self), slope))

    return {torch.ops.prims.erf_inv.default: erf_inv}


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single precision.
_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)
