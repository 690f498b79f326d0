from __future__ import annotations

import warnings

import pytest

# torch's exporters and TensorFlow are chatty; the tests assert on behaviour, not on noise.
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def numpy_framework():
    """The numpy toy framework's adapter, registered for one test (tests/numpy_models.py)."""
    import onnxbridge as ob
    from onnxbridge._registry import default_registry
    from tests.numpy_models import NumpyAdapter

    ob.register_adapter(NumpyAdapter(), overwrite=True)
    yield NumpyAdapter.framework
    default_registry.unregister(NumpyAdapter.framework)
