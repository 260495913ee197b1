"""Archive reprocessing on a real `dask scheduler` + 2 `dask worker` processes: a worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

from dsa110_contimg.archive.manifest import Manifest
from dsa110_contimg.simulate.archive import simulate_archive

pytestmark = pytest.mark.cluster


def reprocess(source, out, run_dir, scheduler):
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(run_dir), "reprocess",
            str(source), "--out", str(out), "--scheduler", scheduler]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_worker_killed_mid_run_changes_nothing(scheduler, tmp_path):
    from distributed import Client

    source = tmp_path / "in"
    files = simulate_archive(source, "tiny", n_nights=1, targets_per_night=2)
    undisturbed = reprocess(source, tmp_path / "a", tmp_path / "run_a", scheduler)
    stdout, stderr = undisturbed.communicate(timeout=900)
    assert undisturbed.returncode == 0, stderr[-3000:]

    disturbed = reprocess(source, tmp_path / "b", tmp_path / "run_b", scheduler)
    deadline = time.time() + 300
    with Client(scheduler) as client:
        # a task of the run on a worker (whichever engine, whatever step): under way
        under_way = False
        while not under_way and time.time() < deadline:
            under_way = any(client.processing().values())
            time.sleep(0.05)
        assert under_way, "the run never reached the workers"
        pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)  # the nanny starts a new worker process
    stdout, stderr = disturbed.communicate(timeout=900)
    assert disturbed.returncode == 0, stderr[-3000:]
    with Client(scheduler) as client:
        client.wait_for_workers(2, timeout=60)
        assert victim not in client.run(os.getpid).values()

    for folder in ("a", "b"):
        with Manifest(tmp_path / folder) as manifest:
            assert manifest.counts()["done"] == 3
    calibrator = Path(files[0]["path"]).stem
    for step in ("bpcal", "2gcal"):
        with (
            table(str(tmp_path / "a" / f"{calibrator}_{step}"), ack=False) as a,
            table(str(tmp_path / "b" / f"{calibrator}_{step}"), ack=False) as b,
        ):
            keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
            np.testing.assert_array_equal(
                a.sort(keys).getcol("CPARAM"), b.sort(keys).getcol("CPARAM")
            )
            np.testing.assert_array_equal(a.sort(keys).getcol("FLAG"), b.sort(keys).getcol("FLAG"))
    for f in files:
        name = f"{Path(f['path']).stem}.cal.mms"
        with (
            table(str(tmp_path / "a" / name), ack=False) as a,
            table(str(tmp_path / "b" / name), ack=False) as b,
        ):
            order = "DATA_DESC_ID, TIME, ANTENNA1, ANTENNA2"
            np.testing.assert_array_equal(
                a.sort(order).getcol("CORRECTED_DATA"), b.sort(order).getcol("CORRECTED_DATA")
            )
    # nothing half-written was published: every caltable is a whole table
    for caltable in (tmp_path / "b").glob("*.caltables/*"):
        assert (caltable / "table.dat").exists()
