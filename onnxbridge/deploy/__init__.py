"""Layer 8, deployment targets that take plain models: the browser page and its server."""
