"""Layer 5, the export contract and its dispatch: the adapter protocol, the registry, running an adapter, describing a file.

Adapters (:mod:`onnxbridge.adapters`, one layer up) implement the contract kept here.
"""
