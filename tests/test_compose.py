"""One graph from a scikit-learn preprocessing pipeline and a PyTorch head, validated against both."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.parity import assert_parity

pytest.importorskip("sklearn")
torch = pytest.importorskip("torch")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import onnxbridge as ob  # noqa: E402
from tests.models import fit  # noqa: E402


@pytest.fixture(scope="module")
def parts():
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    prep = make_pipeline(StandardScaler(), PCA(16, random_state=0)).fit(x_train)
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    features = prep.transform(x_train).astype(np.float32)
    fit(head, features, y_train, epochs=20)
    head.eval()
    first = ob.export(prep, x_train[:4])
    second = ob.export(head, torch.from_numpy(features[:4]), dynamic_axes="batch")
    return first, second, prep, head, x_test, y_test


def test_scaler_pca_and_torch_head_compose_into_one_graph_that_matches_python(parts):
    first, second, prep, head, x_test, y_test = parts
    before = [m.SerializeToString() for m in (first.model, second.model)]
    both = ob.compose(first, second, connect={"variable": "input"})
    assert [m.SerializeToString() for m in (first.model, second.model)] == before  # the parts are left as they were
    assert_parity(both.validation)
    assert both.input_names == ["input"]
    assert both.output_names == second.output_names
    report = both.validate(samples=[x_test])
    assert report.distinct_rows >= len(x_test)
    with torch.no_grad():
        want = head(torch.tensor(prep.transform(x_test), dtype=torch.float32)).numpy()
    got = both.session(providers=["cpu"]).run(x_test)[second.output_names[0]]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    assert (got.argmax(1) == y_test).mean() > 0.9
    assert_parity(ob.compose(first, second).validation)  # one output into one input: connect may be left out


def test_a_joint_of_different_dtypes_names_both_sides(parts):
    _, second, prep, _, x_test, _ = parts
    double = ob.export(prep, x_test[:4], precision="float64")
    with pytest.raises(ob.InputError, match=r"output 'variable' is float64.*input 'input' takes float32"):
        ob.compose(double, second)


def test_unknown_names_and_open_joints_are_refused_with_what_exists(parts):
    first, second, *_ = parts
    with pytest.raises(ob.InputError, match=r"outputs are \['variable'\]"):
        ob.compose(first, second, connect={"features": "input"})
    with pytest.raises(ob.InputError, match=r"second model's inputs \['input'\]"):
        ob.compose(first, second, connect={"variable": "x"})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    connect=st.dictionaries(
        st.sampled_from(["variable", "features", "x"]), st.sampled_from(["input", "x", "y"]), max_size=2
    )
)
def test_any_connect_mapping_composes_or_is_refused_with_input_error(parts, connect):
    first, second, *_ = parts
    if connect == {"variable": "input"}:
        assert_parity(ob.compose(first, second, connect=connect).validation)
    else:
        with pytest.raises(ob.InputError, match="connect="):
            ob.compose(first, second, connect=connect)
