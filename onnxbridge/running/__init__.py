"""Layer 2, running a model in onnxruntime: sessions, providers, feeds, data-engine batches, what onnxruntime loads."""
