"""``python -m onnxbridge``: the command line."""

from onnxbridge._cli import main

main()
