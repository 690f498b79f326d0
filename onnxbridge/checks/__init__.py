"""Layer 3, checking a model: validation against the source, compatibility with runtimes, the browser check.

Takes plain values (a ``ModelProto``, feeds, a session factory), never an ``Artifact``.
"""
