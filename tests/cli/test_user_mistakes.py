"""Every user mistake is one line with exit 2 and nothing half-written, case by case.

One table: the command line, the exit status, a fragment of the one error
line, and the checks every case gets: no traceback, nothing new (or changed)
in the workspace, every input MS byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import one_error_line
from dsa110_contimg.simulate import preset, simulate_observation


def _contimg(args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            digest.update(str(full.relative_to(path)).encode())
            digest.update(full.read_bytes())
    return digest.hexdigest()


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: files with their size and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        is_dir = path.is_dir() and not path.is_symlink()
        found[str(path.relative_to(root))] = None if is_dir else (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Inputs, solved tables and broken files that the cases point at."""
    ws = tmp_path_factory.mktemp("mistakes")
    tiny = preset("tiny", seed=3)
    for folder in ("in", "other"):
        (ws / folder).mkdir()
        simulate_observation(ws / folder / "tiny.ms", tiny)
    (ws / "chan3").mkdir()
    simulate_observation(ws / "chan3" / "tiny3.ms", tiny.replace(n_chan=3))
    (ws / "chan2").mkdir()
    simulate_observation(ws / "chan2" / "tiny2.ms", tiny.replace(n_chan=2))
    # Solve-only runs: the tables the apply cases use, and a published product
    # of in/tiny.ms that other/tiny.ms must not replace.
    for ms, out in (("in/tiny.ms", "solved"), ("chan3/tiny3.ms", "solved3"),
                    ("chan2/tiny2.ms", "solved2")):  # fmt: skip
        result = _contimg(
            ["calibrate", ms, "--out", out, "--no-apply", "--no-progress", "--json"], ws
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)  # --json: one document, nothing else on stdout
        assert summary["status"] == "ok" and summary["observations"][0]["output_mms"]
    flagged = ws / "flagged"
    flagged.mkdir()
    subprocess.run(["cp", "-r", ws / "in" / "tiny.ms", flagged / "flagged.ms"], check=True)
    from casacore.tables import table

    with table(str(flagged / "flagged.ms"), readonly=False, ack=False) as main:
        main.putcol("FLAG", np.ones_like(main.getcol("FLAG")))
    cut_data = ws / "cut_data.ms"
    subprocess.run(["cp", "-r", ws / "in" / "tiny.ms", cut_data], check=True)
    # The storage-manager files of the visibilities and of the per-row scalars.
    # (A cut StandardStMan file makes casacore itself crash: not covered.)
    os.truncate(cut_data / "table.f0", 5000)
    cut_vis = ws / "cut_vis.ms"
    subprocess.run(["cp", "-r", ws / "in" / "tiny.ms", cut_vis], check=True)
    data_file = max(cut_vis.glob("table.f*_TSM*"), key=lambda f: f.stat().st_size)
    os.truncate(data_file, 1000)
    (ws / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (ws / "notes.txt").write_text("not a Measurement Set\n")
    cut = ws / "cut_description.ms"
    subprocess.run(["cp", "-r", ws / "in" / "tiny.ms", cut], check=True)
    os.truncate(cut / "table.dat", 50)
    empty = ws / "empty_dir"
    empty.mkdir()
    (empty / "readme.txt").write_text("no MS here\n")
    bad_manifest = ws / "bad_manifest"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.sqlite").write_bytes(b"this is not a database" * 20)
    emptied = ws / "emptied_manifest"
    emptied.mkdir()
    (emptied / "manifest.sqlite").write_bytes(b"")
    (emptied / "obs.cal.mms").mkdir()
    bad_json = ws / "bad_json_manifest"
    bad_json.mkdir()
    with sqlite3.connect(bad_json / "manifest.sqlite") as db:
        db.executescript(
            "CREATE TABLE observations (path TEXT PRIMARY KEY, role TEXT NOT NULL, "
            "state TEXT NOT NULL, fingerprint TEXT, solutions_from TEXT, outputs TEXT NOT NULL "
            "DEFAULT '[]', caltables TEXT NOT NULL DEFAULT '[]', started TEXT, finished TEXT, "
            "seconds REAL, qa_score REAL, qa_verdict TEXT, error TEXT);"
            "INSERT INTO observations (path, role, state, outputs) "
            "VALUES ('/x.ms', 'target', 'done', '{not json');"
        )
    configs = {
        "retries_two.yaml": "retries: two\n",
        "chanbin_text.yaml": 'fast:\n  enabled: true\n  chanbin: "4"\n',
        "minsnr_five.yaml": "bandpass:\n  minsnr: five\n",
        "solint_word.yaml": "gains:\n  solints: [inf, sixty]\n",
        "unknown_section.yaml": "bandpas:\n  minsnr: 3\n",
        "negative_fillgaps.yaml": "bandpass:\n  fillgaps: -1\n",
        "list_config.yaml": "- a\n- b\n",
        "bad_uvrange.yaml": "prebp:\n  uvrange: 'far away'\n",
        "thresholds_order.yaml": "flagged_fraction:\n  good: 0.5\n  warning: 0.2\n",
        "thresholds_word.yaml": "flagged_fraction:\n  good: low\n",
        "thresholds_unknown.yaml": "no_such_metric:\n  good: 1\n",
    }
    for name, text in configs.items():
        (ws / name).write_text(text)
    return ws


CAL = ["calibrate", "in/tiny.ms", "--no-progress"]
# (id, arguments, exit status, fragment of the error line)
CASES = [
    ("inspect-missing", ["inspect", "nowhere.ms"], 2, "does not exist"),
    ("inspect-file", ["inspect", "notes.txt"], 2, "not a Measurement Set"),
    ("inspect-directory", ["inspect", "empty_dir"], 2, "not a Measurement Set"),
    ("inspect-cut-description", ["inspect", "cut_description.ms"], 2, "damaged or truncated"),
    ("inspect-cut-data", ["inspect", "cut_data.ms"], 2, "damaged or truncated"),
    ("phasing-cut-data", ["check-phasing", "cut_data.ms", "--calibrator", "0834+555"], 2,
     "damaged or truncated"),
    ("inspect-cut-visibilities", ["inspect", "cut_vis.ms"], 2, "damaged or truncated"),
    ("qa-cut-visibilities", ["qa", "cut_vis.ms", "--out", "qa_out"], 2, "damaged or truncated"),
    ("phasing-unknown-calibrator", ["check-phasing", "in/tiny.ms", "--calibrator", "NOPE"], 2,
     "NOPE"),
    ("phasing-name-and-position", ["check-phasing", "in/tiny.ms", "--calibrator", "0834+555",
                                   "--cal-ra", "128.7", "--cal-dec", "55.6"], 2, "not both"),
    ("phasing-field-and-auto", ["check-phasing", "in/tiny.ms", "--calibrator", "0834+555",
                                "--field", "1", "--auto-fields"], 2, "not both"),
    ("phasing-ra-out-of-range", ["check-phasing", "in/tiny.ms", "--cal-ra", "400",
                                 "--cal-dec", "0"], 2, "--cal-ra must be"),
    ("phasing-no-calibrator", ["check-phasing", "in/tiny.ms"], 2, "--calibrator NAME"),
    ("calibrate-refant-name", [*CAL, "--refant", "DSA999"], 2, "reference antenna 'DSA999'"),
    ("calibrate-refant-station", [*CAL, "--refant", "2"], 2, "(DSA-110 station 2) has no data"),
    ("calibrate-spw-range", [*CAL, "--spw", "7"], 2, "SPW"),
    ("calibrate-field-range", [*CAL, "--field", "99"], 2, "field"),
    ("calibrate-zero-workers", [*CAL, "--n-workers", "0"], 2, "must be at least 1"),
    ("calibrate-negative-retries", [*CAL, "--retries", "-1"], 2, "must not be negative"),
    ("calibrate-unknown-cluster-option", [*CAL, "--cluster-option", "bogus=1"], 2,
     "unknown local cluster setting"),
    ("calibrate-cluster-option-form", [*CAL, "--cluster-option", "bogus"], 2, "key=value"),
    ("calibrate-unknown-profile", [*CAL, "--cluster", "moon"], 2, "unknown cluster profile"),
    ("calibrate-scheduler-and-workers", [*CAL, "--scheduler", "tcp://127.0.0.1:9",
                                         "--n-workers", "2"], 2, "do not apply"),
    ("calibrate-report-unwritable", [*CAL, "--performance-report", "/proc/report.html"], 2,
     "cannot be written"),
    ("calibrate-report-no-directory", [*CAL, "--performance-report", "no/such/report.html"], 2,
     "does not exist"),
    ("calibrate-report-is-directory", [*CAL, "--performance-report", "empty_dir"], 2,
     "is a directory"),
    ("calibrate-out-unwritable", [*CAL, "--out", "/proc/contimg-out"], 2, "cannot be written"),
    ("calibrate-out-is-file", [*CAL, "--out", "notes.txt"], 2, "is not a directory"),
    ("calibrate-retries-word", [*CAL, "--config", "retries_two.yaml"], 2,
     "retries must be a whole number"),
    ("calibrate-chanbin-text", [*CAL, "--config", "chanbin_text.yaml"], 2,
     "fast.chanbin must be a whole number"),
    ("calibrate-minsnr-word", [*CAL, "--config", "minsnr_five.yaml"], 2,
     "bandpass.minsnr must be a number"),
    ("calibrate-solint-word", [*CAL, "--config", "solint_word.yaml"], 2, "'sixty'"),
    ("calibrate-unknown-section", [*CAL, "--config", "unknown_section.yaml"], 2,
     "unknown config setting"),
    ("calibrate-negative-fillgaps", [*CAL, "--config", "negative_fillgaps.yaml"], 2,
     "fillgaps must not be negative"),
    ("calibrate-config-list", [*CAL, "--config", "list_config.yaml"], 2, "must hold a mapping"),
    ("calibrate-config-binary", [*CAL, "--config", "binary.bin"], 2, "config file"),
    ("calibrate-config-missing", [*CAL, "--config", "nowhere.yaml"], 2, "does not exist"),
    ("calibrate-bad-uvrange", [*CAL, "--config", "bad_uvrange.yaml"], 2, "prebp.uvrange"),
    ("calibrate-bad-preset", [*CAL, "--preset", "heroic"], 2, "unknown calibration preset"),
    ("calibrate-two-of-one-name", ["calibrate", "in/tiny.ms", "other/tiny.ms", "--out", "two",
                                   "--no-progress"], 2, "would both write"),
    ("calibrate-would-replace-other-input", ["calibrate", "other/tiny.ms", "--out", "solved",
                                             "--no-progress"], 2, "holds the calibration of"),
    ("calibrate-target-missing", [*CAL, "--targets", "nowhere.ms"], 2, "does not exist"),
    ("apply-other-channelisation", ["apply", "in/tiny.ms", "--tables", "solved3/tiny3_bpcal",
                                    "--out", "applied"], 2, "another spectral setup"),
    ("apply-coarser-bandpass", ["apply", "in/tiny.ms", "--tables", "solved2/tiny2_bpcal",
                                "--out", "applied"], 2, "another spectral setup"),
    ("apply-missing-table", ["apply", "in/tiny.ms", "--tables", "solved/nothing_bpcal",
                             "--out", "applied"], 2, "does not exist"),
    ("apply-ms-as-table", ["apply", "in/tiny.ms", "--tables", "other/tiny.ms",
                           "--out", "applied"], 2, "not a CASA calibration table"),
    ("qa-thresholds-order", ["qa", "in/tiny.ms", "--out", "qa_out", "--thresholds",
                             "thresholds_order.yaml"], 2, "one direction"),
    ("qa-thresholds-word", ["qa", "in/tiny.ms", "--out", "qa_out", "--thresholds",
                            "thresholds_word.yaml"], 2, "must be a number"),
    ("qa-thresholds-unknown", ["qa", "in/tiny.ms", "--out", "qa_out", "--thresholds",
                               "thresholds_unknown.yaml"], 2, "unknown QA threshold"),
    ("qa-images-binary", ["qa", "in/tiny.ms", "--out", "qa_out", "--images", "binary.bin"], 2,
     "is not the JSON"),
    ("qa-images-missing", ["qa", "in/tiny.ms", "--out", "qa_out", "--images", "none.json"], 2,
     "does not exist"),
    ("qa-out-unwritable", ["qa", "in/tiny.ms", "--out", "/proc/qa"], 2, "cannot be written"),
    ("reprocess-binary-input", ["reprocess", "in", "binary.bin", "--out", "re_out"], 2,
     "binary file"),
    ("reprocess-nothing-found", ["reprocess", "empty_dir", "--out", "re_out"], 2,
     "no Measurement Sets found"),
    ("reprocess-foreign-manifest", ["reprocess", "in", "--out", "bad_manifest"], 2,
     "not a manifest"),
    ("reprocess-emptied-manifest", ["reprocess", "in", "--out", "emptied_manifest"], 2,
     "is empty but"),
    ("reprocess-validity", ["reprocess", "in", "--out", "re_out", "--validity-hours", "0"], 2,
     "must be positive"),
    ("reprocess-zero-workers", ["reprocess", "in", "--out", "re_out", "--n-workers", "0"], 2,
     "must be at least 1"),
    ("reprocess-report-unwritable", ["reprocess", "in", "--out", "re_out",
                                     "--performance-report", "/proc/r.html"], 2,
     "cannot be written"),
    ("reprocess-same-name-as-product", ["reprocess", "other", "--out", "solved"], 2,
     "holds the calibration of"),
    ("status-foreign-manifest", ["status", "bad_manifest"], 2, "not a manifest"),
    ("status-bad-json", ["status", "bad_json_manifest"], 2, "invalid JSON"),
    ("status-no-manifest", ["status", "empty_dir"], 2, "no manifest"),
    ("image-out-unwritable", ["image", "in/tiny.ms", "--out", "/proc/images"], 2,
     "cannot be written"),
    ("image-zero-workers", ["image", "in/tiny.ms", "--n-workers", "0"], 2, "must be at least 1"),
    ("simulate-existing", ["simulate", "in/tiny.ms", "--preset", "tiny"], 2, "--overwrite"),
]  # fmt: skip


def _contimg_in_this_process(args, cwd, monkeypatch, capsys):
    """``contimg ARGS`` run by its own entry point here (what ``sys.exit(main())`` returns).

    The same code path as the installed command, without a new interpreter
    and CASA start-up per case; an uncaught exception fails the test.
    """
    import logging

    from dsa110_contimg.cli import main

    monkeypatch.chdir(cwd)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:  # argparse's usage errors
        status = stop.code
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out, err)


@pytest.mark.parametrize(("args", "status", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_mistake_is_one_line_and_leaves_nothing(
    workspace, monkeypatch, capsys, args, status, fragment
):
    inputs = sorted(workspace.glob("*/*.ms"))
    before_inputs = {p: _content_hash(p) for p in inputs}
    before = _snapshot(workspace)
    result = _contimg_in_this_process(args, workspace, monkeypatch, capsys)
    assert result.returncode == status, result.stderr
    line = one_error_line(result)
    assert fragment in line, line
    assert _snapshot(workspace) == before, "the failed command changed the workspace"
    assert {p: _content_hash(p) for p in inputs} == before_inputs


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_solve_only_publishes_every_table_of_every_spw(workspace):
    """``--no-apply`` waits for every solve and merge before publishing (both SPWs)."""
    from casacore.tables import table

    solved = workspace / "solved"
    for step in ("prebp", "bpcal", "gpcal", "2gcal"):
        with table(str(solved / f"tiny_{step}"), ack=False) as merged:
            assert sorted(set(merged.getcol("SPECTRAL_WINDOW_ID"))) == [0, 1]
        for spw in (0, 1):
            assert (solved / "tiny.caltables" / f"tiny_spw{spw:02d}_{step}" / "table.dat").exists()
    assert (solved / "tiny.cal.mms" / "table.dat").exists()
    assert not list(solved.glob(".*")), "work directories, partials or lock files left behind"


def test_fully_flagged_ms_is_one_line_and_publishes_nothing(workspace, tmp_path):
    """Every SPW fully flagged: nothing to calibrate, exit 1 as the README says, no product."""
    out = tmp_path / "out"
    before = _content_hash(workspace / "flagged" / "flagged.ms")
    result = _contimg(["calibrate", "flagged/flagged.ms", "--field", "2~3", "--out", out,
                       "--no-progress", "--n-workers", "2"], workspace)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "nothing published" in one_error_line(result)
    assert "fully flagged" in result.stdout
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    assert _content_hash(workspace / "flagged" / "flagged.ms") == before


def test_dry_runs_leave_nothing_on_disk(workspace):
    before = _snapshot(workspace)
    for args in (
        ["reprocess", "in", "--out", "dry_out", "--dry-run"],
        ["calibrate", "in/tiny.ms", "--out", "dry_cal", "--dry-run"],
    ):
        result = _contimg(args, workspace)
        assert result.returncode == 0, result.stderr
    assert _snapshot(workspace) == before


def test_json_output_is_one_document(workspace, tmp_path):
    """Every command's --json: stdout is one JSON document (the dashboard line on stderr)."""
    out = tmp_path / "json_runs"
    for args in (
        ["inspect", "in/tiny.ms", "--json"],
        ["check-phasing", "in/tiny.ms", "--calibrator", "0834+555", "--json"],
        ["calibrate", "in/tiny.ms", "--out", out / "dry", "--dry-run", "--json"],
        ["apply", "in/tiny.ms", "--tables", "solved/tiny_bpcal", "--out", out / "applied",
         "--json", "--no-progress", "--n-workers", "1"],
        ["bench-spw", "in/tiny.ms", "--selections", "0~1", "--out", out / "bench", "--json",
         "--no-progress", "--n-workers", "1"],
        ["qa", "solved/tiny.cal.mms", "--out", out / "qa", "--json"],
        ["image", "in/tiny.ms", "--field", "3", "--datacolumn", "data", "--niter", "10",
         "--out", out / "images", "--n-workers", "1", "--json"],
        ["status", "bad_json_manifest", "--json"],
    ):  # fmt: skip
        result = _contimg(args, workspace)
        if result.returncode == 0:
            assert isinstance(json.loads(result.stdout), dict), (args, result.stdout[:500])
            if "--dry-run" not in args and args[0] in ("apply", "bench-spw", "image"):
                assert "Dask dashboard" in result.stderr
        else:
            assert args[0] == "status" and result.stdout == "", (args, result.stderr)


def test_simulate_on_a_full_disk_is_one_line(tmp_path):
    """A real small file system (a 3 MB tmpfs): one line, exit 2, nothing left on it."""
    mount = tmp_path / "tiny_disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mount],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = _contimg(["simulate", mount / "obs.ms", "--preset", "small"], tmp_path)
        assert result.returncode == 2, result.stderr
        assert "not enough free space" in one_error_line(result)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", mount], check=True)


def test_disk_full_during_reprocess_is_one_line_and_a_rerun_finishes(workspace, tmp_path):
    """--out on a 600 kB tmpfs: the run stops in one line (exit 1); with space, a rerun ends."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", mount],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    out = mount / "reprocessed"
    before = _content_hash(workspace / "in" / "tiny.ms")
    try:
        full = _contimg(["reprocess", "in", "--out", out, "--n-workers", "1"], workspace)
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr
        # Where the disk fills decides who reports it: the manifest write (one line)
        # or the MS's own steps (recorded as its failure).
        status = _contimg(["status", out, "--json"], workspace)
        states = [r["state"] for r in json.loads(status.stdout)["observations"]]
        assert states and set(states) <= {"interrupted", "failed"}, status.stdout
        if "interrupted" in states:
            assert "disk is full" in one_error_line(full)
        subprocess.run(["mount", "-o", "remount,size=64m", mount], check=True)
        again = _contimg(["reprocess", "in", "--out", out, "--n-workers", "1"], workspace)
        assert again.returncode == 0, again.stderr
        done = json.loads(_contimg(["status", out, "--json"], workspace).stdout)
        assert done["counts"]["done"] == 1 and (out / "tiny.cal.mms" / "table.dat").exists()
        assert not list(out.glob(".*"))
    finally:
        subprocess.run(["umount", "-l", mount], check=True)
    assert _content_hash(workspace / "in" / "tiny.ms") == before


def test_any_legal_path_works(workspace, tmp_path):
    """Spaces, unicode and a symlinked parent, in the MS path and in --out (no shell)."""
    odd = tmp_path / "night of 15 Jan é"
    odd.mkdir()
    subprocess.run(["cp", "-r", workspace / "in" / "tiny.ms", odd / "my obs é.ms"], check=True)
    link = tmp_path / "linked dir"
    link.symlink_to(odd, target_is_directory=True)
    out = tmp_path / "out put ü"
    result = _contimg(["calibrate", link / "my obs é.ms", "--out", out, "--no-progress",
                       "--n-workers", "2"], tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    from casacore.tables import table

    with table(str(out / "my obs é.cal.mms"), ack=False) as mms:
        assert mms.nrows() > 0 and "CORRECTED_DATA" in mms.colnames()
    assert (out / "my obs é_bpcal" / "table.dat").exists()
    assert not list(out.glob(".*"))


def test_a_bandpass_solved_on_averaged_channels_applies_with_the_fast_recipe(workspace, tmp_path):
    """2 channels, each the mean of 2 of the MS's 4: refused by default, applied with --fast."""
    args = ["apply", "in/tiny.ms", "--tables", "solved2/tiny2_bpcal", "--no-progress",
            "--n-workers", "1", "--out", tmp_path / "applied"]  # fmt: skip
    (tmp_path / "fast2.yaml").write_text("fast:\n  enabled: true\n  chanbin: 2\n")
    result = _contimg([*args, "--config", tmp_path / "fast2.yaml"], workspace)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "applied" / "tiny.cal.mms" / "table.dat").exists()
