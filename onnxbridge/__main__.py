"""``python -m onnxbridge``: the command line."""

from onnxbridge.cli._app import main

main()
