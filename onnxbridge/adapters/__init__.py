"""Built-in adapters, one module per framework, each imported on first use."""
