"""Data files that ship with onnxbridge (see scripts/ort_releases.py)."""
