"""Layer 10, the command line (``onnxbridge ...``): commands, argument parsing, model files, the demo."""

from __future__ import annotations


def main() -> None:
    """The ``onnxbridge`` console script (``[project.scripts]``)."""
    from onnxbridge.cli._app import main as run

    run()
