"""Calibration against a real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

pytestmark = pytest.mark.cluster


def test_calibrate_on_an_existing_scheduler_matches_the_local_run(
    scheduler, corrupted_small, tmp_path
):
    from distributed import Client

    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import plan_calibration, run_plan
    from dsa110_contimg.cluster import dask_client
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    cal = lookup_calibrator("0834+555")
    fields = choose_fields(corrupted_small, cal, FieldChoice(auto=True, window=12))
    results = {}
    for name in ("remote", "local"):
        plan = plan_calibration(
            [str(corrupted_small)],
            cal,
            {str(corrupted_small): fields},
            "103",
            resolve_config(),
            tmp_path / name,
        )
        if name == "remote":
            with Client(scheduler) as client:
                workers = client.scheduler_info()["workers"]
                assert len(workers) == 2
                assert all(w["nthreads"] == 1 for w in workers.values())
                summary = run_plan(plan, client, tmp_path / f"{name}-run", cal, progress=False)
        else:
            with dask_client(n_workers=2) as client:
                summary = run_plan(plan, client, tmp_path / f"{name}-run", cal, progress=False)
        assert summary.status == "ok"
        results[name] = summary.observations[0]
    for step in ("bpcal", "2gcal"):
        with (
            table(results["remote"].merged_tables[step], ack=False) as a,
            table(results["local"].merged_tables[step], ack=False) as b,
        ):
            keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
            np.testing.assert_array_equal(
                a.sort(keys).getcol("CPARAM"), b.sort(keys).getcol("CPARAM")
            )
    with (
        table(results["remote"].output_mms, ack=False) as a,
        table(results["local"].output_mms, ack=False) as b,
    ):
        order = "DATA_DESC_ID, TIME, ANTENNA1, ANTENNA2"
        np.testing.assert_array_equal(
            a.sort(order).getcol("CORRECTED_DATA"), b.sort(order).getcol("CORRECTED_DATA")
        )


def test_cli_scheduler_option_and_performance_report(scheduler, corrupted_small, tmp_path):
    report = tmp_path / "dask-report.html"
    result = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "calibrate", str(corrupted_small),
         "--auto-fields", "--spw", "0~1", "--out", str(tmp_path / "out"),
         "--scheduler", scheduler, "--performance-report", str(report), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    # --json: the summary alone on stdout, the dashboard address on stderr
    assert json.loads(result.stdout)["status"] == "ok"
    assert "Dask dashboard: http://127.0.0.1:" in result.stderr
    assert report.exists() and "<html" in report.read_text()[:2000].lower()
    assert (tmp_path / "out" / f"{Path(corrupted_small).stem}.cal.mms").exists()


def test_unreachable_scheduler_is_one_line(corrupted_small, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "calibrate", str(corrupted_small),
         "--auto-fields", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot reach Dask scheduler tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
