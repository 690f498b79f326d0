"""Layer 1, ONNX models as files and graphs: values and dtypes, files and metadata, scratch copies, passes, opsets.

Works on ``onnx.ModelProto`` and onnx-ir models only; never runs a model.
"""
