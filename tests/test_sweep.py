"""``sweep``: grids of configurations, serially and on joblib's worker processes (and a Dask
cluster, in the numpy session), with the serial results, progress, warnings and Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import local_cluster, param_state
from tinycnn_xp import sweep as sweep_module
from tinycnn_xp.sweep import learning_rate_sweep, sweep

joblib = pytest.importorskip("joblib", reason='parallel sweeps need joblib: pip install ".[parallel]"')

GRID = {"lr": [0.05, 0.5], "momentum": [0.0, 0.9], "seed": [0, 3]}
EPOCHS = 3
HUGE_LR = 1e200
OVERFLOW = pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")


@pytest.fixture(scope="module")
def host_data():
    return tc.make_dataset_bundle(train_per_class=12, val_per_class=6)[:4]


@pytest.fixture
def data(put, host_data):
    return [put(a) for a in host_data]


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("runs once, in the numpy session")


def assert_same_records(records, expected, exact):
    assert [r["config"] for r in records] == [r["config"] for r in expected]
    for record, other in zip(records, expected):
        for key in tc.METRICS:
            if exact:
                assert record["history"][key] == other["history"][key], (record["config"], key)
            else:
                np.testing.assert_allclose(record["history"][key], other["history"][key], rtol=0,
                                           atol=1e-12, err_msg=f"{record['config']} {key}")
        snapshots, others = record["history"]["kernel_snapshots"], other["history"]["kernel_snapshots"]
        assert snapshots.keys() == others.keys()
        for epoch in snapshots:
            np.testing.assert_allclose(snapshots[epoch], others[epoch], rtol=0, atol=0 if exact else 1e-12)


# -- serial: what a run is -------------------------------------------------------------------------
def test_every_configuration_in_grid_order_and_a_seed_seeds_weights_and_shuffles(data):
    model = tc.TinyCNN(seed=99)  # with a seed in the grid, its weights do not matter
    records = sweep(model, *data, grid=GRID, epochs=EPOCHS)
    assert [r["config"] for r in records] == [
        {"lr": lr, "momentum": beta, "seed": seed}
        for lr in GRID["lr"] for beta in GRID["momentum"] for seed in GRID["seed"]]
    for record in records:
        config = record["config"]
        alone = tc.TinyCNN(seed=config["seed"]).fit(*data, epochs=EPOCHS, lr=config["lr"],
                                                     momentum=config["momentum"],
                                                     seed=config["seed"], verbose=False)
        for key in tc.METRICS:
            assert record["history"][key] == alone[key], (config, key)
    assert model.placement is None  # never trained, never placed


def test_without_a_seed_every_run_starts_from_the_model(put, data):
    model = tc.deep_cnn(seed=2)
    model.fit(*data, epochs=1, momentum=0.5, verbose=False)  # placed, with velocities
    before = param_state(model)
    records = sweep(model, *data, grid={"momentum": [0.0, 0.5]}, epochs=2, seed=7)
    for record in records:
        alone = tc.deep_cnn(seed=2)
        alone.fit(*data, epochs=1, momentum=0.5, verbose=False)
        history = alone.fit(*data, epochs=2, seed=7, verbose=False, **record["config"])
        assert record["history"]["train_loss"] == history["train_loss"]
    for key, value in param_state(model).items():  # the model itself never trains
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_an_empty_grid_is_one_run_of_the_fit_arguments(data):
    records = sweep(tc.TinyCNN(seed=1), *data, grid={}, epochs=2, lr=0.1)
    assert len(records) == 1 and records[0]["config"] == {}
    assert records[0]["history"]["train_loss"] == tc.TinyCNN(seed=1).fit(
        *data, epochs=2, lr=0.1, verbose=False)["train_loss"]


# -- in parallel: the serial results, on the data's library and device ----------------------------
@pytest.mark.slow
def test_parallel_runs_give_the_serial_results(backend, data):
    model = tc.TinyCNN(seed=5)
    serial = sweep(model, *data, grid=GRID, epochs=EPOCHS)
    parallel = sweep(model, *data, grid=GRID, n_jobs=2, epochs=EPOCHS)
    # Bitwise on NumPy; elsewhere a library's thread count may reorder a reduction.
    assert_same_records(parallel, serial, exact=backend.NAME == "numpy")


def test_parallel_learning_rate_sweep_gives_the_serial_histories(backend, data):
    model = tc.TinyCNN(seed=5)
    serial = learning_rate_sweep(model, *data, lrs=[0.05, 0.12, 0.5], epochs=EPOCHS, verbose=False)
    parallel = learning_rate_sweep(model, *data, lrs=[0.05, 0.12, 0.5], n_jobs=-1, epochs=EPOCHS,
                                   verbose=False)
    assert list(parallel) == list(serial)
    as_records = lambda histories: [{"config": {"lr": lr}, "history": h} for lr, h in histories.items()]
    assert_same_records(as_records(parallel), as_records(serial), exact=backend.NAME == "numpy")


def where_it_lands(shipment):
    """In a worker: the library, device and dtype that the shipped data is placed on there."""
    from tinycnn_xp._xp import describe
    return [describe(array) for array in sweep_module._unship(shipment)]


def test_workers_place_the_data_where_it_lives_here(backend, put, host_data):
    """Same library, device and dtype in a worker process (JAX's float64 included)."""
    data = [put(host_data[0], "float64"), put(host_data[1]), put(host_data[2], "float32"),
            put(host_data[3].astype("int32"))]
    shipment = sweep_module._ship(data)
    from tinycnn_xp._xp import describe
    here = [describe(array) for array in data]
    assert where_it_lands(shipment) == here
    # A fresh worker process (JAX there starts without float64).
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        there = joblib.Parallel(n_jobs=2)(joblib.delayed(where_it_lands)(shipment) for _ in range(2))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert there == [here, here]


@OVERFLOW
@pytest.mark.parametrize("where", ["processes", "threads"])
def test_warnings_of_a_worker_run_are_issued_here(numpy_only, data, where):
    backend = "loky" if where == "processes" else "threading"
    with warnings.catch_warnings(record=True) as caught, joblib.parallel_config(backend=backend):
        warnings.simplefilter("always")
        histories = learning_rate_sweep(tc.TinyCNN(seed=42), *data, lrs=(0.05, HUGE_LR), n_jobs=2,
                                        epochs=3, verbose=False)
    diverged = [str(w.message) for w in caught if "diverged" in str(w.message)]
    assert len(diverged) == 1 and "lr=1e+200" in diverged[0]
    assert histories[HUGE_LR]["diverged_epoch"] == 0 and "diverged_epoch" not in histories[0.05]


# -- progress and Ctrl-C ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_progress_as_each_run_finishes(numpy_only, data, capsys, n_jobs):
    seen = []
    records = sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1, 0.2]}, n_jobs=n_jobs, epochs=1,
                    verbose=True, on_run=lambda record, done, total: seen.append((record, done, total)))
    assert [(done, total) for _, done, total in seen] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(id(record) for record, _, _ in seen) == sorted(id(record) for record in records)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["run", "1/3"], ["run", "2/3"], ["run", "3/3"]]
    assert all("val acc" in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_ctrl_c_keeps_the_runs_already_finished(numpy_only, data, n_jobs):
    def interrupt(record, done, total):
        if done == 1:
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.warns(RuntimeWarning, match=r"sweep interrupted: 1 of 6 runs finished"):
        records = sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]},
                        n_jobs=n_jobs, epochs=2, on_run=interrupt)
    assert len(records) == 1 and len(records[0]["history"]["train_loss"]) == 2
    # and the next sweep runs normally (on fresh workers after an abort)
    assert len(sweep(tc.TinyCNN(), *data, grid={"lr": [0.1, 0.2]}, n_jobs=n_jobs, epochs=1)) == 2


def test_ctrl_c_inside_a_serial_run_keeps_that_run_marked(data):
    def interrupt(epoch, metrics):
        if interrupt.calls == 2:  # the second run's first epoch
            os.kill(os.getpid(), signal.SIGINT)
        interrupt.calls += 1
    interrupt.calls = 1
    with pytest.warns(RuntimeWarning, match=r"sweep interrupted: 1 of 3 runs"):
        records = sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1, 0.2]}, epochs=1, callback=interrupt)
    assert [r["config"] for r in records] == [{"lr": 0.05}, {"lr": 0.1}]
    assert not records[0]["history"].get("interrupted")
    assert records[1]["history"]["interrupted"]


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys
    import tinycnn_xp as tc
    from tinycnn_xp.sweep import sweep
    data = tc.make_dataset_bundle()[:4]
    records = sweep(tc.TinyCNN(), *data, grid={"lr": [0.01 * (k + 1) for k in range(12)]},
                    n_jobs=2, epochs=int(sys.argv[1]), verbose=True)
    print(f"kept {len(records)} runs", flush=True)
""")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_ctrl_c_at_the_terminal_ends_the_sweep_cleanly(numpy_only, tmp_path):
    """SIGINT to the whole process group, workers included, as a terminal's Ctrl-C sends it."""
    script = tmp_path / "sweep_script.py"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), "150"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = process.stdout.readline()
        assert first.startswith("run 1/12"), first + process.stderr.read()
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err
    kept = int(out.strip().splitlines()[-1].split()[1])
    assert 1 <= kept < 12
    assert "sweep interrupted" in err and "Traceback" not in err, err


# -- where the runs go: n_jobs, joblib's configuration, Dask ---------------------------------------
def spy_on_workers(monkeypatch):
    calls = []
    original = sweep_module._train_shipped

    def spy(*args):
        calls.append(args[0])
        return original(*args)
    monkeypatch.setattr(sweep_module, "_train_shipped", spy)
    return calls


def test_n_jobs_none_follows_joblibs_configuration(numpy_only, data, monkeypatch):
    calls = spy_on_workers(monkeypatch)  # seen by the threading backend only (same process)
    serial = sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1]}, epochs=1)
    assert calls == []
    with joblib.parallel_config(backend="threading", n_jobs=2):
        threaded = sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1]}, epochs=1)
        assert sorted(calls) == [0, 1]
        sweep(tc.TinyCNN(), *data, grid={"lr": [0.05, 0.1]}, n_jobs=1, epochs=1)  # 1: serial
        assert sorted(calls) == [0, 1]
    assert_same_records(threaded, serial, exact=True)


def test_without_joblib_serial_runs_and_parallel_says_what_to_install(numpy_only, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "joblib", None)
    assert len(sweep(tc.TinyCNN(), *data, grid={"lr": [0.1]}, epochs=1)) == 1
    assert len(learning_rate_sweep(tc.TinyCNN(), *data, lrs=[0.1], epochs=1, verbose=False)) == 1
    with pytest.raises(ImportError, match=r"tinycnn-xp\[parallel\]"):
        sweep(tc.TinyCNN(), *data, grid={"lr": [0.1]}, n_jobs=2, epochs=1)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_serial_results(numpy_only, data):
    """A LocalCluster of two worker processes on 127.0.0.1, through joblib's dask backend."""
    distributed = pytest.importorskip("distributed",
                                      reason='needs dask[distributed]: pip install ".[parallel]"')
    model = tc.TinyCNN(seed=5)
    serial = sweep(model, *data, grid=GRID, epochs=EPOCHS)
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, \
            distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            on_dask = sweep(model, *data, grid=GRID, epochs=EPOCHS)
        workers = client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()
    assert_same_records(on_dask, serial, exact=True)


# -- what a sweep refuses, before any run ----------------------------------------------------------
@pytest.mark.parametrize("grid,kwargs,exc,match", [
    ([0.1], {}, TypeError, "grid must be a dict"),
    ({"lr": [0.1], "eval_batch_size": [4]}, {}, ValueError, "cannot be swept"),
    ({"lr": [0.1]}, {"lr": 0.2}, TypeError, "both in grid"),
    ({"lr": []}, {}, ValueError, "at least one value"),
    ({"lr": [0.1, 0.1]}, {}, ValueError, "distinct"),
    ({"lr": [0.1, -1.0]}, {}, ValueError, r"grid\['lr'\]\[1\]"),
    ({"lr": 0.1}, {}, TypeError, "sequence of values"),
    ({"seed": ["0"]}, {}, TypeError, r"grid\['seed'\]\[0\]"),
    ({"momentum": [1.0]}, {}, ValueError, "momentum"),
    ({"lr": [0.1]}, {"learning_rate": 0.1}, TypeError, "unexpected keyword"),
    ({"lr": [0.1]}, {"n_jobs": 0}, ValueError, "n_jobs"),
    ({"lr": [0.1]}, {"n_jobs": 1.5}, TypeError, "n_jobs"),
    ({"lr": [0.1]}, {"n_jobs": True}, TypeError, "n_jobs"),
])
def test_bad_grids_and_arguments(data, grid, kwargs, exc, match):
    model = tc.TinyCNN()
    with pytest.raises(exc, match=match):
        sweep(model, *data, grid=grid, epochs=1, **kwargs)
    assert model.placement is None


def test_a_placed_model_refuses_data_from_elsewhere(put, data, host_data):
    model = tc.TinyCNN()
    model.forward(data[0][:1, ...])  # placed in float64
    float32 = [put(host_data[0], "float32"), data[1], put(host_data[2], "float32"), data[3]]
    with pytest.raises(TypeError, match="float64 parameters"):
        sweep(model, *float32, grid={"lr": [0.1]}, epochs=1)
    with pytest.raises(TypeError, match="float64 parameters"):
        learning_rate_sweep(model, *float32, lrs=[0.1], epochs=1)
    with pytest.raises(TypeError, match="model"):
        sweep(tc.Dense(3, 2), *data, grid={"lr": [0.1]})


@pytest.mark.slow
def test_the_speedup_benchmark_runs(numpy_only, tmp_path):
    """The smoke run of ``benchmarks/sweep_speedup.py`` (its speed is measured, never asserted)."""
    import json

    from benchmarks import sweep_speedup
    assert sweep_speedup.main(["--quick", "--json", str(tmp_path / "speedup.json")]) == 0
    result = json.loads((tmp_path / "speedup.json").read_text())
    assert result["identical"] and set(result["speedup"]) == {"cold", "warm"}


@pytest.mark.float32
def test_a_float32_sweep_in_parallel_stays_float32(backend, put, host_data):
    """No float64 array on the device, in the workers either (array-api-strict's no_float64)."""
    data = [put(a, "float32" if i % 2 == 0 else None) for i, a in enumerate(host_data)]
    serial = sweep(tc.TinyCNN(seed=5), *data, grid={"lr": [0.05, 0.5]}, epochs=2)
    parallel = sweep(tc.TinyCNN(seed=5), *data, grid={"lr": [0.05, 0.5]}, n_jobs=2, epochs=2)
    assert all(r["history"]["kernel_snapshots"][0].dtype == np.float32 for r in parallel)
    assert_same_records(parallel, serial, exact=backend.NAME == "numpy")
