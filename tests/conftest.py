"""Shared synthetic observations (built once per session, small presets)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.cluster.client import CASA_WORKER_ENVIRON
from dsa110_contimg.phasing.geometry import FieldChoice
from dsa110_contimg.simulate import preset, simulate_observation

# The 12 fields nearest the calibrator's transit: what the tests solve on.
SOLVE_FIELDS = FieldChoice(auto=True, window=12)


def one_error_line(result) -> str:
    """The one line of a failed command's stderr that says what went wrong; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_solutions_agree(reference, other, step) -> tuple:
    """Two calibration tables' solutions within the native engine's promise: the same rows,
    flags disagreeing on at most 1 %, median amplitude difference below 0.5 % and phase
    below 0.5 deg. Returns both tables sorted alike, and the solutions both kept."""
    from casacore.tables import table

    keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
    sa, sb = (table(str(path), ack=False).sort(keys) for path in (reference, other))
    assert sa.nrows() == sb.nrows(), step
    flag_a, flag_b = sa.getcol("FLAG"), sb.getcol("FLAG")
    assert (flag_a != flag_b).mean() <= 0.01, step
    good = ~flag_a & ~flag_b
    ratio = sb.getcol("CPARAM")[good] / sa.getcol("CPARAM")[good]
    assert np.median(np.abs(np.abs(ratio) - 1)) < 0.005, step
    assert np.degrees(np.median(np.abs(np.angle(ratio)))) < 0.5, step
    return sa, sb, good


def pytest_collection_modifyitems(items):
    """A test that uses a Dask cluster is marked ``cluster`` (``make test-fast`` skips it)."""
    for item in items:
        if {"client", "scheduler"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session", autouse=True)
def _run_logs_in_tmp(tmp_path_factory):
    os.environ["CONTIMG_RUN_ROOT"] = str(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def make_observation(tmp_path_factory):
    """Build (and cache by parameters) a synthetic MS; returns its path."""
    cache = {}

    def build(name="small", stem=None, **overrides):
        key = (name, stem, tuple(sorted(overrides.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("obs") / f"{stem or name}.ms"
            simulate_observation(out, preset(name, **overrides))
            cache[key] = out
        return cache[key]

    return build


@pytest.fixture(scope="session")
def clean_small(make_observation):
    """Noiseless, uncorrupted small observation (beam on)."""
    return make_observation("small", noise=False, corrupt=False)


@pytest.fixture(scope="session")
def corrupted_small(make_observation):
    """Noisy, corrupted small observation: the usual test input."""
    return make_observation("small")


BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[1]


def _wait_for(pattern, path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text() if Path(path).exists() else ""
        found = re.search(pattern, text)
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"{pattern!r} not seen in {path}:\n{text}")


@pytest.fixture(scope="module")
def client():
    """A local cluster of two single-threaded worker processes, shared by a module's tests.

    Not the default scheduler: work reaches it only through the client, so a
    test's own ``dask.compute`` (e.g. a MODEL_DATA write) stays in the test
    process, whose tables it then reads and writes.
    """
    from dsa110_contimg.cluster import dask_client

    with dask_client(n_workers=2, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A `dask scheduler` and two single-threaded `dask worker` processes."""
    logs = tmp_path_factory.mktemp("dask")
    processes = []

    def start(args, log_name):
        log = open(logs / log_name, "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **CASA_WORKER_ENVIRON},  # as cluster/README.md asks
        )  # fmt: skip
        processes.append((proc, log))
        return proc

    start(
        [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0"],
        "scheduler.log",
    )  # fmt: skip
    address = _wait_for(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", logs / "scheduler.log")[1]
    for i in range(2):
        start(
            [BIN / "dask", "worker", address, "--nthreads", "1", "--nworkers", "1",
             "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "4GB"],
            f"worker{i}.log",
        )  # fmt: skip
    for i in range(2):
        _wait_for(r"Registered to", logs / f"worker{i}.log")
    yield address
    for proc, log in processes:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
