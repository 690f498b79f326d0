from __future__ import annotations

import warnings

import pytest

# torch's exporters and TensorFlow are chatty; the tests assert on behaviour, not on noise.
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")
