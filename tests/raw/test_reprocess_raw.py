"""Reprocessing from raw subband files: convert, calibrate, apply, QA; reruns skip what is done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from dsa110_contimg.archive.discover import describe
from dsa110_contimg.archive.manifest import Manifest
from dsa110_contimg.archive.plan import CALIBRATOR_MIN_RESPONSE
from dsa110_contimg.archive.raw import pending_entry, plan_raw
from dsa110_contimg.simulate import preset
from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, transit_centred_start
from dsa110_contimg.simulate.subbands import simulate_subband_files
from dsa110_contimg.sky.calibrators import load_catalog, lookup_calibrator

pytestmark = pytest.mark.slow  # converts and calibrates three observations


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dsa110_contimg", *map(str, args)],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A calibrator transit and two targets 2 and 3 hours later, as subband files (2 SPWs)."""
    folder = tmp_path_factory.mktemp("night") / "raw"
    folder.mkdir()
    config = preset("tiny", drift_phase_rms_deg=0.0, seed=41)
    duration = config.n_times * config.integration_s
    transit = transit_centred_start(lookup_calibrator(config.calibrator).ra_deg, duration)
    stamps = []
    for hours in (0.0, 2.0, 3.0):
        start = mjd_seconds_to_iso(transit + hours * 3600.0)
        written = simulate_subband_files(
            folder.parent / f"obs{hours:g}", config.replace(start_time=start)
        )
        for f in [*written.files, written.truth_path]:
            f.rename(folder / f.name)
        stamps.append(written.stamp)
    return folder, stamps


def test_raw_night_end_to_end_and_reruns(night, tmp_path):
    folder, stamps = night
    out = tmp_path / "out"
    catalog = load_catalog(None)
    with Manifest(out, writable=False) as manifest:
        raw = plan_raw([folder], out, manifest, allow_partial=True)
    planned = [pending_entry(job, catalog, CALIBRATOR_MIN_RESPONSE) for job in raw.conversions.jobs]
    first = run_cli("reprocess", folder, "--out", out, "--allow-partial", "--n-workers", 2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "3 observation(s) of subband files to convert" in first.stdout
    assert "3 MS to process (1 calibrator file(s) to solve)" in first.stdout
    # what the headers said before converting is what the converted MS says
    for entry in planned:
        converted = describe(entry.path, catalog, CALIBRATOR_MIN_RESPONSE)
        assert (entry.role, entry.calibrator) == (converted.role, converted.calibrator)
        assert abs(entry.start_mjd_s - converted.start_mjd_s) < 1e-3
        assert abs(entry.end_mjd_s - converted.end_mjd_s) < 1e-3
        assert abs(entry.apparent_flux_jy - converted.apparent_flux_jy) <= (
            1e-6 * converted.apparent_flux_jy
        )
    status = json.loads(run_cli("status", out, "--json").stdout)
    records = {r["path"]: r for r in status["observations"]}
    subbands = [r for r in records.values() if r["role"] == "subbands"]
    assert len(subbands) == 3 and all(r["state"] == "done" for r in subbands)
    for record in subbands:  # the observation's files, each with its fingerprint
        assert [Path(i["path"]).name[-9:] for i in record["inputs"]] == ["sb14.hdf5", "sb15.hdf5"]
        assert all(len(i["fingerprint"]) == 64 for i in record["inputs"])
    converted = {r["outputs"][0] for r in subbands}
    assert converted == {str(out / "converted" / f"{s}.ms") for s in stamps}
    for ms in converted:
        record = records[ms]
        assert record["state"] == "done" and record["qa_verdict"], record
    roles = sorted(records[ms]["role"] for ms in converted)
    assert roles == ["calibrator", "target", "target"]

    again = run_cli("reprocess", folder, "--out", out, "--allow-partial", "--n-workers", 2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 observation(s) of subband files to convert, 3 converted and unchanged" in again.stdout
    assert "0 MS to process" in again.stdout

    # a changed subband file redoes its observation (and only that one)
    changed = next(folder.glob(f"{stamps[2]}_sb15.hdf5"))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = run_cli("reprocess", folder, "--out", out, "--allow-partial", "--n-workers", 2)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "1 observation(s) of subband files to convert, 2 converted and unchanged" in third.stdout
    assert "1 MS to process" in third.stdout


def test_calibrator_that_cannot_be_converted_fails_its_targets(night, tmp_path):
    """The calibrator's file loses its data after planning read its header: its targets
    are converted but fail, saying why; nothing half-written is left."""
    source, stamps = night
    folder = tmp_path / "raw"
    shutil.copytree(source, folder)
    with h5py.File(folder / f"{stamps[0]}_sb15.hdf5", "a") as broken:
        del broken["Data/visdata"]
    out = tmp_path / "out"
    result = run_cli("reprocess", folder, "--out", out, "--allow-partial", "--n-workers", 2)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    records = {r["path"]: r for r in json.loads(run_cli("status", out, "--json").stdout)[
        "observations"]}  # fmt: skip
    calibrator = records[str(folder / f"{stamps[0]}_sb*.hdf5")]
    assert calibrator["state"] == "failed" and "not a readable UVH5" in calibrator["error"]
    for stamp in stamps[1:]:
        target = records[str(out / "converted" / f"{stamp}.ms")]
        assert target["state"] == "failed", target
        assert "its calibrator file could not be converted" in target["error"]
    left = sorted(p.name for p in (out / "converted").iterdir() if not p.name.endswith(".npz"))
    assert left == [f"{s}.ms" for s in sorted(stamps[1:])]
