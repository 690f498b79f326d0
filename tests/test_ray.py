"""Batch inference on a real local Ray (ray.init(num_cpus=2))."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
pytest.importorskip("torch")

import onnxbridge as ob  # noqa: E402
import onnxbridge.ray as obray  # noqa: E402
from tests import engines  # noqa: E402

pytestmark = pytest.mark.slow  # starts Ray


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return engines.digits_rows()


FEATURES = [f"f{i}" for i in range(64)]


def test_random_forest_scores_10000_rows_in_order(local_ray, data):
    flat, _ = data
    art = engines.forest()
    # Blocks are materialized first: two actors on two CPUs leave none for upstream tasks.
    ds = ray.data.from_pandas(pd.DataFrame(flat, columns=FEATURES)).repartition(4).materialize()
    out = obray.predict(ds, art, input_columns=FEATURES, batch_size=1000, concurrency=2).to_pandas()
    expected = art.session().run(flat)
    assert len(out) == engines.ROWS
    np.testing.assert_array_equal(out["label"].to_numpy(), expected["label"])
    np.testing.assert_allclose(np.stack(out["probabilities"].to_numpy()), expected["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(out[FEATURES].to_numpy(), flat)  # the inputs ride along, same order


def test_cnn_scores_a_column_of_images(local_ray, data):
    _, images = data
    art = engines.cnn()
    ds = ray.data.from_numpy(images)  # one column, "data", of (1, 8, 8) arrays
    out = obray.predict(ds, art, input_columns={"input": "data"}, output_columns=["logits"], batch_size=500)
    result = out.take_batch(engines.ROWS, batch_format="numpy")
    np.testing.assert_allclose(result["logits"], art.session().run(images)["output"], rtol=1e-5, atol=1e-6)


def _predictor_pids() -> list[int]:
    """PIDs of Ray worker processes running our predictor actor (Ray titles them ray::MapWorker(...))."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"MapBatches(_Predictor)" in handle.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_killed_actor_is_retried_and_the_result_is_complete(local_ray, data):
    _, images = data
    art = engines.cnn()
    ds = ray.data.from_numpy(images)
    scored = obray.predict(ds, art, input_columns={"input": "data"}, batch_size=10, concurrency=1)
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(scored.take_batch(engines.ROWS, batch_format="numpy")))
    job.start()
    killed = None
    deadline = time.time() + 60
    while killed is None and time.time() < deadline and job.is_alive():
        pids = _predictor_pids()
        if pids:
            time.sleep(0.3)  # let it score some batches first
            os.kill(pids[0], signal.SIGKILL)  # a real worker failure, mid-job
            killed = pids[0]
        time.sleep(0.02)
    assert killed is not None, "no predictor actor was seen running"
    assert job.is_alive(), "the job must still have been running when the actor died"
    job.join(timeout=180)
    assert len(result["output"]) == engines.ROWS
    np.testing.assert_allclose(result["output"], art.session().run(images)["output"], rtol=1e-5, atol=1e-6)


def test_bad_column_mappings_fail_on_the_driver(local_ray, data):
    flat, _ = data
    art = engines.forest()
    ds = ray.data.from_pandas(pd.DataFrame(flat[:100], columns=FEATURES))
    with pytest.raises(ob.InputError, match=r"Column\(s\) \['pixels'\] for model input 'input'"):
        obray.predict(ds, art, input_columns={"input": "pixels"})
    with pytest.raises(ob.InputError, match="63 columns were given"):
        obray.predict(ds, art, input_columns=FEATURES[:63])
    with pytest.raises(ob.InputError, match=r"already exist"):
        obray.predict(ds, art, input_columns=FEATURES, output_columns=["f0", "p"])
    images = ray.data.from_numpy(np.zeros((10, 3, 3), np.float32))
    with pytest.raises(ob.InputError, match="Column 'data' has rows of shape"):
        obray.predict(images, engines.cnn(), input_columns={"input": "data"})
    strings = ray.data.from_items([{"x": "a"}] * 4)
    with pytest.raises(ob.InputError, match="Column 'x' has dtype"):
        obray.predict(strings, engines.cnn(), input_columns={"input": "x"})
