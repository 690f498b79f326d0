"""Lazy, explained imports of optional dependencies.

``import onnxbridge`` imports no framework and no onnxruntime; the code that needs
one calls :func:`require` at the moment it needs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from onnxbridge.core._errors import MissingDependencyError

# Which extra brings which top-level module; used in messages only.
_EXTRAS = {
    "torch": "torch",
    "onnxscript": "torch",
    "tensorflow": "tensorflow",
    "tf2onnx": "tensorflow",
    "sklearn": "sklearn",
    "skl2onnx": "sklearn",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "onnxmltools": "sklearn",
    "transformers": "transformers",
}


def require(module: str, *, purpose: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to get it.

    Args:
        module: Dotted module name, e.g. ``"torch"``.
        purpose: What needs it, completing "... needs <module>", e.g. "Exporting a
            PyTorch model".
        extra: The onnxbridge extra that installs it; guessed from ``module``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        root = module.split(".")[0]
        extra = extra or _EXTRAS.get(root)
        how = f'Install it with: pip install "onnxbridge[{extra}]"' if extra else f"Install it with: pip install {root}"
        missing = isinstance(err, ModuleNotFoundError) and err.name in {root, module}
        state = "is not installed" if missing else f"is installed but failed to import ({err})"
        raise MissingDependencyError(f"{purpose} needs the '{root}' package, which {state}. {how}.") from err
