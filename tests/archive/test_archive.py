"""Archive reprocessing: discovery, pairing by night, the manifest, resuming."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dsa110_contimg.archive.discover import fingerprint
from dsa110_contimg.archive.manifest import Manifest
from dsa110_contimg.simulate.archive import simulate_archive

pytestmark = pytest.mark.slow  # builds or calibrates whole observations


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive") / "in"
    files = simulate_archive(folder, "tiny", n_nights=2, targets_per_night=2)
    broken = folder / "broken.ms"
    (broken / "ANTENNA").mkdir(parents=True)
    (broken / "table.dat").write_text("not a table")
    return folder, files


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "dsa110_contimg", *map(str, args)],
                          capture_output=True, text=True, timeout=900, **kwargs)  # fmt: skip


def copy_archive(folder, tmp_path):
    copy = tmp_path / "in"
    shutil.copytree(folder, copy)
    return copy


def test_every_file_processed_with_its_own_nights_solutions(archive, tmp_path):
    folder, files = archive
    source = copy_archive(folder, tmp_path)
    inputs = sorted(source.glob("night*.ms"))
    before = {p: fingerprint(p) for p in inputs}
    out = tmp_path / "out"
    # engine casa: its applycal logs show which tables each target's apply used
    result = run_cli("--log-dir", tmp_path / "run", "reprocess", source, "--out", out,
                     "--n-workers", "2", "--engine", "casa")  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # the broken file failed
    assert "Traceback" not in result.stderr
    assert "Dask dashboard: http://127.0.0.1:" in result.stdout
    status = json.loads(run_cli("status", out, "--json").stdout)
    assert status["counts"] == {
        "pending": 0,
        "running": 0,
        "done": 6,
        "failed": 1,
        "interrupted": 0,
    }
    records = {Path(r["path"]).name: r for r in status["observations"]}
    assert "not a Measurement Set" in records["broken.ms"]["error"]
    for f in files:
        record = records[Path(f["path"]).name]
        assert record["state"] == "done" and record["role"] == f["role"]
        assert record["qa_score"] is not None and record["qa_verdict"]
        assert all(Path(p).exists() for p in record["outputs"])
        if f["role"] == "target":
            calibrator = f"night{f['night']}_00_calibrator"
            assert Path(record["solutions_from"]).name == f"{calibrator}.ms"
            assert [Path(t).name for t in record["caltables"]] == [
                f"{calibrator}_bpcal",
                f"{calibrator}_2gcal",
            ]
            apply_log = tmp_path / "run" / "casa" / f"{Path(f['path']).stem}-spw00-apply.log"
            assert f"{calibrator}_spw00_bpcal" in apply_log.read_text()
    # QA reports of every processed MS
    assert len(list((tmp_path / "run" / "qa").glob("*/report.html"))) == 6
    # the inputs are never written: no file of them changed
    assert {p: fingerprint(p) for p in inputs} == before
    assert not list(source.glob("**/.*partial-*")) and not list(out.glob("**/.*partial-*"))

    # A rerun skips everything done and unchanged ...
    again = run_cli("--log-dir", tmp_path / "run2", "reprocess", source, "--out", out,
                    "--n-workers", "2")  # fmt: skip
    assert "0 MS to process" in again.stdout and "6 done and unchanged" in again.stdout
    # ... and redoes a target whose input changed, with its calibrator's recorded tables.
    changed = Path(files[1]["path"].replace(str(folder), str(source)))
    table_dat = changed / "table.dat"
    os.utime(table_dat, ns=(time.time_ns(), time.time_ns()))
    third = run_cli("--log-dir", tmp_path / "run3", "reprocess", source, "--out", out,
                    "--n-workers", "2")  # fmt: skip
    assert "1 MS to process (0 calibrator file(s) to solve)" in third.stdout, third.stdout
    with Manifest(out) as manifest:
        record = manifest.get(changed)
    assert record["state"] == "done"
    assert record["caltables"][0].endswith("night0_00_calibrator_bpcal")
    # A calibrator whose input changed is solved again, and so are the targets
    # that used its tables; the other night stays done.
    calibrator = source / "night1_00_calibrator.ms"
    os.utime(calibrator / "table.dat", ns=(time.time_ns(), time.time_ns()))
    fourth = run_cli("--log-dir", tmp_path / "run4", "reprocess", source, "--out", out,
                     "--n-workers", "2")  # fmt: skip
    assert "3 MS to process (1 calibrator file(s) to solve)" in fourth.stdout, fourth.stdout
    assert "3 done and unchanged" in fourth.stdout


def test_killed_runner_resumes_and_ends_like_an_undisturbed_run(archive, tmp_path):
    folder, files = archive
    source = copy_archive(folder, tmp_path)
    shutil.rmtree(source / "broken.ms")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(tmp_path / "run1"),
            "reprocess", str(source), "--out", str(out), "--n-workers", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    # the dashboard answers over HTTP during the run; kill the run once the first MS
    # is finished, with the others still running
    deadline = time.time() + 300
    dashboard_status = None
    for line in proc.stdout:
        if line.startswith("Dask dashboard: "):
            url = line.split(": ", 1)[1].strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/status")
            with urllib.request.urlopen(url, timeout=30) as response:
                dashboard_status = (response.status, response.read())
        if "MS finished" in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert dashboard_status is not None and dashboard_status[0] == 200
    assert b"Dask" in dashboard_status[1]
    with Manifest(out) as manifest:
        interrupted = manifest.counts()
    assert interrupted["done"] >= 1 and interrupted["done"] < 6
    shown = json.loads(run_cli("status", out, "--json").stdout)["counts"]
    assert shown["running"] == 0 and shown["interrupted"] == interrupted["running"] > 0
    report = tmp_path / "dask-report.html"
    result = run_cli("--log-dir", tmp_path / "run2", "reprocess", source, "--out", out,
                     "--n-workers", "2", "--performance-report", report)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{interrupted['done']} done and unchanged" in result.stdout
    assert "<html" in report.read_text()[:2000].lower()
    summary = json.loads((tmp_path / "run2" / "reprocess_summary.json").read_text())
    assert summary["processed"] == 6 - interrupted["done"] and summary["task_seconds"] > 0
    with Manifest(out) as manifest:
        assert manifest.counts() == {"pending": 0, "running": 0, "done": 6, "failed": 0}
        for record in manifest.all():
            assert all(Path(p).exists() for p in record["outputs"])
    assert not list(out.glob("**/.*partial-*")) and not list(out.glob(".*.cal.work"))


def test_manifest_records_states_and_counts(tmp_path):
    with Manifest(tmp_path) as manifest:
        manifest.register("/a.ms", "calibrator", "f1")
        manifest.register("/b.ms", "target", "f2", "/a.ms")
        manifest.mark_running("/a.ms")
        assert manifest.counts() == {"pending": 1, "running": 1, "done": 0, "failed": 0}
        manifest.mark_done("/a.ms", ["/out/a.cal.mms"], ["/out/a_bpcal"], 3.5, 0.95, "good")
        manifest.mark_failed("/b.ms", "no calibrator within 12 h")
        a, b = manifest.get("/a.ms"), manifest.get("/b.ms")
    assert a["state"] == "done" and a["outputs"] == ["/out/a.cal.mms"] and a["qa_score"] == 0.95
    assert b["state"] == "failed" and b["solutions_from"] == "/a.ms"
    with Manifest(tmp_path) as reopened:  # persistent
        assert reopened.counts()["done"] == 1
        reopened.register("/a.ms", "calibrator", "f1-changed")  # inputs changed: pending again
        assert reopened.get("/a.ms")["state"] == "pending"


def test_bad_inputs_are_one_line(tmp_path):
    result = run_cli("reprocess", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.returncode == 2 and "does not exist" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_cli("reprocess", tmp_path / "empty", "--out", tmp_path / "out")
    assert result.returncode == 2 and "no Measurement Sets found" in result.stderr
    result = run_cli("status", tmp_path / "empty")
    assert result.returncode == 2 and "no manifest" in result.stderr


@pytest.mark.slow
def test_a_hundred_tiny_files_on_two_workers(tmp_path):
    """One calibrator and 99 targets queued at once: all done, scheduler memory bounded."""
    import psutil

    folder = tmp_path / "in"
    (calibrator, target) = [
        f["path"] for f in simulate_archive(folder, "tiny", 1, 1, n_spw=1, n_times=4)
    ]
    for i in range(2, 100):
        shutil.copytree(target, folder / f"night0_{i:02d}_target.ms")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(tmp_path / "run"),
            "reprocess", str(folder), "--out", str(out), "--n-workers", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = psutil.Process(proc.pid)  # the LocalCluster's scheduler lives in the driver
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, driver.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    assert "100 MS to process (1 calibrator file(s) to solve)" in stdout
    with Manifest(out) as manifest:
        assert manifest.counts() == {"pending": 0, "running": 0, "done": 100, "failed": 0}
    assert peak < 1.5 * 1024**3, f"driver + scheduler peaked at {peak / 1024**3:.2f} GB"
