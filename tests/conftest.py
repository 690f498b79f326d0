from __future__ import annotations

import warnings

import pytest

# torch's exporters and TensorFlow are chatty; the tests assert on behaviour, not on noise.
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


def _registered_numpy_framework():
    import onnxbridge as ob
    from onnxbridge.exporting._registry import default_registry
    from tests.numpy_models import NumpyAdapter

    ob.register_adapter(NumpyAdapter(), overwrite=True)
    yield NumpyAdapter.framework
    default_registry.unregister(NumpyAdapter.framework)


@pytest.fixture
def numpy_framework():
    """The numpy toy framework's adapter, registered for one test (tests/numpy_models.py)."""
    yield from _registered_numpy_framework()


@pytest.fixture(scope="module")
def numpy_framework_module():
    """The same, for a module-scoped fixture."""
    yield from _registered_numpy_framework()


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the browser tests (tests/browser.py), one per test module."""
    from tests.browser import launch

    yield from launch()
