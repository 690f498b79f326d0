"""Layer 0, infrastructure every other layer uses: errors, lazy optional imports, value types, dynamic axes.

Imports nothing from onnxbridge but :mod:`onnxbridge._version`, and no framework, onnx or onnxruntime at
import time.
"""
