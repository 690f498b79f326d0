"""Layer 4, text generation on exported decoders: settings and recorded tokens, the decoding step, the loop, its check."""
