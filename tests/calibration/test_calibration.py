"""Calibration on Dask: truth recovery, the original failure, serial equality, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table, taql

from conftest import SOLVE_FIELDS, assert_solutions_agree, one_error_line
from dsa110_contimg.calibration.config import resolve_config
from dsa110_contimg.calibration.pipeline import plan_apply, plan_calibration, run_plan
from dsa110_contimg.calibration.serial import run_serial_recipe
from dsa110_contimg.phasing.geometry import choose_fields
from dsa110_contimg.simulate.truth import load_truth
from dsa110_contimg.sky.calibrators import lookup_calibrator

pytestmark = pytest.mark.slow  # builds or calibrates whole observations

CAL = lookup_calibrator("0834+555")


def column_digest(ms, column="DATA") -> str:
    with table(str(ms), ack=False) as t:
        return hashlib.sha256(t.getcol(column).tobytes()).hexdigest()


def plan_fields(ms):
    """The 12 fields nearest the calibrator transit."""
    return choose_fields(ms, CAL, SOLVE_FIELDS)


def calibrate(ms, out, client, run_dir, **overrides):
    config = resolve_config(overrides=overrides)
    fields = plan_fields(ms)
    plan = plan_calibration([str(ms)], CAL, {str(ms): fields}, "103", config, out)
    return plan, run_plan(plan, client, run_dir, CAL, progress=False)


@pytest.fixture(scope="module")
def calibrated(corrupted_small, tmp_path_factory, client):
    before = column_digest(corrupted_small)
    out = tmp_path_factory.mktemp("cal")
    plan, summary = calibrate(corrupted_small, out, client, out / "run", engine="casa")
    return plan, summary, before


def bandpass_errors(ms, bpcal):
    """Median |amp| error and phase error (deg) of a B table against the simulation truth.

    The refant's phase is removed per channel from the truth (CASA references
    every solution to it), then each antenna/SPW/correlation is compared up to
    one complex constant (solnorm scale and the phase the pre-bandpass solve took).
    """
    truth = load_truth(ms)
    with table(str(bpcal), ack=False) as t:
        ant, spw = t.getcol("ANTENNA1"), t.getcol("SPECTRAL_WINDOW_ID")
        refant = t.getcol("ANTENNA2")[0]
        solution, flag = t.getcol("CPARAM"), t.getcol("FLAG")
    # the table has a row for every station; those without data do not count
    with_data = np.isin(ant, [truth.antenna_names.index(n)
                              for n in truth.meta["antennas_with_data"]])  # fmt: skip
    ant, spw, solution, flag = ant[with_data], spw[with_data], solution[with_data], flag[with_data]
    expected = truth.bandpass[ant, spw] * np.exp(-1j * np.angle(truth.bandpass[refant, spw]))
    ratio = np.where(~flag & (np.abs(expected) > 0), solution / expected, np.nan)
    ratio = ratio / np.nanmean(ratio, axis=1, keepdims=True)
    amp_error = np.nanmedian(np.abs(np.abs(ratio) - 1))
    phase_error = np.nanmedian(np.degrees(np.abs(np.angle(ratio))))
    return amp_error, phase_error, 1 - flag.mean()


def corrected_model_scatter_deg(mms, fields):
    """Circular std of arg(CORRECTED / MODEL), channel-averaged per row, on ``fields``."""
    with table(str(mms), ack=False) as main:  # noqa: F841 - taql reads $main
        rows = taql(
            "select CORRECTED_DATA, MODEL_DATA, FLAG from $main where ANTENNA1 != ANTENNA2 "
            f"&& FIELD_ID IN [{','.join(map(str, fields))}]"
        )
        product = rows.getcol("CORRECTED_DATA") * np.conj(rows.getcol("MODEL_DATA"))
        flags = rows.getcol("FLAG")
    product[flags] = 0
    per_row = product.sum(axis=(1, 2))
    per_row = per_row[np.abs(per_row) > 0]
    resultant = np.abs(np.mean(per_row / np.abs(per_row)))
    return np.degrees(np.sqrt(-2 * np.log(resultant)))


def test_recovers_injected_bandpass(calibrated, corrupted_small):
    plan, summary, before = calibrated
    assert summary.status == "ok"
    obs = summary.observations[0]
    assert obs.calibrated_spws == [0, 1, 2, 3]
    amp_error, phase_error, kept = bandpass_errors(corrupted_small, obs.merged_tables["bpcal"])
    assert amp_error < 0.02
    assert phase_error < 2.0
    assert kept > 0.97
    assert corrected_model_scatter_deg(obs.output_mms, plan.observations[0].cal_fields) < 5.0
    assert column_digest(corrupted_small) == before, "input DATA was modified"


def test_output_reads_as_one_ms(calibrated):
    from daskms import xds_from_ms

    _, summary, _ = calibrated
    mms = summary.observations[0].output_mms
    datasets = xds_from_ms(mms, columns=["CORRECTED_DATA"], group_cols=["DATA_DESC_ID"])
    assert sorted(ds.attrs["DATA_DESC_ID"] for ds in datasets) == [0, 1, 2, 3]
    with table(mms, ack=False) as t:
        assert {"DATA", "MODEL_DATA", "CORRECTED_DATA"} <= set(t.colnames())
        assert t.nrows() == sum(ds.sizes["row"] for ds in datasets)
    assert not list(Path(mms).parent.glob(".*.work")), "work directory left behind"


def test_summary_reports_tables_statistics_and_timings(calibrated):
    _, summary, _ = calibrated
    obs = summary.observations[0]
    assert set(obs.merged_tables) == {"prebp", "bpcal", "gpcal", "2gcal"}
    assert obs.solutions["bpcal/spw0"]["kept_fraction"] > 0.97
    assert obs.step_seconds["bpcal"] > 0
    assert all(v["phased_to_calibrator"] for v in obs.phasing.values())


def test_without_rephasing_the_original_failure_returns(corrupted_small, tmp_path, client):
    """The model at the phase centre (the original assumption) fails unless rephased."""
    out = tmp_path / "norephase"
    _, summary = calibrate(
        corrupted_small,
        out,
        client,
        tmp_path / "run1",
        phasing={"rephase": False, "model_position": "phase-centre"},
    )
    obs = summary.observations[0]
    verdicts = {v for spw in obs.phasing.values() for v in spw["verdicts"]}
    assert verdicts & {"stale model", "misaligned"}, "the check must flag the model"
    amp_error, phase_error, _ = bandpass_errors(corrupted_small, obs.merged_tables["bpcal"])
    assert phase_error > 10 and amp_error > 0.05, "solutions should be far from the truth"
    fields = plan_fields(corrupted_small)
    assert corrected_model_scatter_deg(obs.output_mms, fields) > 30

    _, fixed = calibrate(
        corrupted_small,
        tmp_path / "rephased",
        client,
        tmp_path / "run2",
        phasing={"model_position": "phase-centre"},
    )
    amp_error, phase_error, kept = bandpass_errors(
        corrupted_small, fixed.observations[0].merged_tables["bpcal"]
    )
    assert kept > 0.97 and phase_error < 2.0


@pytest.fixture(scope="module")
def calibrated_native(corrupted_small, tmp_path_factory, client):
    out = tmp_path_factory.mktemp("native")
    return calibrate(corrupted_small, out, client, out / "run", engine="native")


def assert_corrected_agree(mms_a, mms_b):
    """FLAG of two calibrated Multi-MSs differs on at most 1 %, CORRECTED_DATA within a median
    relative difference of 1 %."""
    order = "DATA_DESC_ID, TIME, ANTENNA1, ANTENNA2"
    with table(mms_a, ack=False) as a, table(mms_b, ack=False) as b:
        sa, sb = a.sort(order), b.sort(order)
        flags = sa.getcol("FLAG")
        assert (flags != sb.getcol("FLAG")).mean() <= 0.01
        ca, cb = sa.getcol("CORRECTED_DATA")[~flags], sb.getcol("CORRECTED_DATA")[~flags]
        assert np.median(np.abs(cb - ca) / np.abs(ca)) < 0.01


def test_native_engine_equals_casa(calibrated, calibrated_native, corrupted_small):
    """Every table row for row (solutions, SNR, times, flags) and CORRECTED_DATA."""
    plan, casa, before = calibrated
    _, native = calibrated_native
    assert native.status == "ok"
    # flag, solves and apply ran natively: no CASA task wrote a log for them
    casa_logs = {p.name.rsplit("-", 1)[-1] for p in Path(native.output_dir).glob("run/casa/*.log")}
    assert not casa_logs & {"flag.log", "prebp.log", "bpcal.log", "apply.log"}, casa_logs
    casa_obs, native_obs = casa.observations[0], native.observations[0]
    # the native copy flagged, modelled and summed the check; CASA's model step did
    assert {p["checked_in"] for p in native_obs.phasing.values()} == {"prepare"}
    assert {p["checked_in"] for p in casa_obs.phasing.values()} == {"model"}
    assert set(native_obs.merged_tables) == set(casa_obs.merged_tables)
    for step, casa_table in casa_obs.merged_tables.items():
        sa, sb, good = assert_solutions_agree(casa_table, native_obs.merged_tables[step], step)
        np.testing.assert_allclose(sb.getcol("TIME"), sa.getcol("TIME"), atol=0.01)
        for column in ("FIELD_ID", "SCAN_NUMBER", "ANTENNA2"):
            np.testing.assert_array_equal(sb.getcol(column), sa.getcol(column), column)
        snr_ratio = sb.getcol("SNR")[good] / sa.getcol("SNR")[good]
        assert abs(np.median(snr_ratio) - 1) < 0.01, step
    assert_corrected_agree(casa_obs.output_mms, native_obs.output_mms)
    amp_error, phase_error, kept = bandpass_errors(
        corrupted_small, native_obs.merged_tables["bpcal"]
    )
    assert amp_error < 0.02 and phase_error < 2.0 and kept > 0.97
    assert column_digest(corrupted_small) == before, "input DATA was modified"


def test_dask_run_equals_serial_casa(calibrated, corrupted_small, tmp_path):
    plan, summary, _ = calibrated
    obs = plan.observations[0]
    serial = run_serial_recipe(obs, CAL, plan.config, tmp_path / "serial", tmp_path / "logs")
    merged = summary.observations[0].merged_tables
    for step, serial_table in serial["tables"].items():
        keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
        with table(serial_table, ack=False) as a, table(merged[step], ack=False) as b:
            sa, sb = a.sort(keys), b.sort(keys)
            np.testing.assert_array_equal(sa.getcol("FLAG"), sb.getcol("FLAG"))
            np.testing.assert_allclose(sa.getcol("CPARAM"), sb.getcol("CPARAM"), atol=1e-5)
    order = "DATA_DESC_ID, TIME, ANTENNA1, ANTENNA2"
    with table(serial["ms"], ack=False) as a, table(obs.output_mms, ack=False) as b:
        sa, sb = a.sort(order), b.sort(order)
        np.testing.assert_array_equal(sa.getcol("FLAG"), sb.getcol("FLAG"))
        np.testing.assert_allclose(
            sa.getcol("CORRECTED_DATA"), sb.getcol("CORRECTED_DATA"), rtol=1e-5, atol=1e-6
        )


def test_fully_flagged_spw_is_skipped_and_the_rest_calibrate(corrupted_small, tmp_path, client):
    ms = tmp_path / "flagged.ms"
    shutil.copytree(corrupted_small, ms)
    with table(str(ms), readonly=False, ack=False) as t:
        spw1 = t.query("DATA_DESC_ID == 1")
        spw1.putcol("FLAG", np.ones_like(spw1.getcol("FLAG")))
        spw1.close()
    _, summary = calibrate(ms, tmp_path / "out", client, tmp_path / "run")
    obs = summary.observations[0]
    # a skipped SPW is data lost: the run is degraded and says which
    assert summary.status == "degraded"
    assert obs.degraded == ["spw 1 skipped: fully flagged"]
    assert obs.calibrated_spws == [0, 2, 3]
    assert {"step": "flag", "spw": 1, "error": "SPW fully flagged"} in obs.skipped
    with table(obs.output_mms, ack=False) as t:
        assert t.query("DATA_DESC_ID == 1").getcol("FLAG").all()


def test_apply_to_a_target_observation(calibrated, make_observation, tmp_path, client):
    _, summary, _ = calibrated
    tables = summary.observations[0].merged_tables
    target = make_observation("small", seed=7, start_time="2026-01-01T20:00:00")
    before = column_digest(target)
    plan = plan_apply([str(target)], [tables["bpcal"], tables["2gcal"]], resolve_config(), tmp_path)
    result = run_plan(plan, client, tmp_path / "run", progress=False)
    assert result.status == "ok"
    assert result.observations[0].calibrated_spws == [0, 1, 2, 3]
    with table(result.observations[0].output_mms, ack=False) as t:
        corrected = t.getcol("CORRECTED_DATA")
        assert np.isfinite(corrected).all() and np.abs(corrected).max() > 0
    assert column_digest(target) == before


def test_native_apply_equals_applycal_on_a_target(calibrated, make_observation, tmp_path,
                                                   client):  # fmt: skip
    """The native apply writes what CASA's applycal writes: CORRECTED_DATA of a target
    hours from the calibrator (gains beyond their ends) and FLAG, where the tables (delays,
    bandpass, gains) hold flagged solutions (calflag) too."""
    from dsa110_contimg.calibration.recipe import applied_tables, solve_parameters
    from dsa110_contimg.casa.tasks import run_gaincal

    plan, summary, _ = calibrated
    merged = dict(summary.observations[0].merged_tables)
    # delays every 60 s (several solutions, applied nearest in time), by CASA, for all SPWs
    obs = plan.observations[0]
    config = resolve_config(overrides={"delay": {"enabled": True, "solint": "60s"}})
    _, parameters = solve_parameters("kcal", obs, config, combined=False)
    parameters["spw"] = ""
    parameters.update(applied_tables(["prebp"], merged, obs.n_spw_total))
    merged["kcal"] = str(tmp_path / "kcal")
    run_gaincal(obs.output_mms, merged["kcal"], str(tmp_path / "kcal.log"), **parameters)
    tables = []
    for step in ("kcal", "bpcal", "2gcal"):
        copy = tmp_path / f"{Path(merged[step]).name}.copy"
        shutil.copytree(merged[step], copy)
        with table(str(copy), readonly=False, ack=False) as t:
            flag = t.getcol("FLAG")
            flag[3::7, : max(1, flag.shape[1] // 3), 0] = True  # some antennas, channels, X
            t.putcol("FLAG", flag)
        tables.append(str(copy))
    target = make_observation("small", seed=7, start_time="2026-01-01T20:00:00")
    results = {}
    for engine in ("casa", "native"):
        config = resolve_config(overrides={"engine": engine})
        plan = plan_apply([str(target)], tables, config, tmp_path / engine)
        result = run_plan(plan, client, tmp_path / f"run-{engine}", progress=False)
        assert result.status == "ok", result.failure_lines()
        applycal_logs = list((tmp_path / f"run-{engine}" / "casa").glob("*-apply.log"))
        assert bool(applycal_logs) == (engine == "casa"), applycal_logs
        order = "DATA_DESC_ID, TIME, ANTENNA1, ANTENNA2"
        with table(result.observations[0].output_mms, ack=False) as t, t.sort(order) as s:
            results[engine] = s.getcol("CORRECTED_DATA"), s.getcol("FLAG")
    (casa, casa_flag), (native, native_flag) = results["casa"], results["native"]
    assert casa_flag.any() and not casa_flag.all()
    np.testing.assert_array_equal(native_flag, casa_flag)
    np.testing.assert_allclose(native[~casa_flag], casa[~casa_flag], rtol=1e-4, atol=1e-6)


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg.calibration.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_original_cli_spelling_end_to_end(make_observation, tmp_path):
    ms = make_observation("small", seed=3)
    work = tmp_path / "A.ms"
    shutil.copytree(ms, work)
    shutil.copy(f"{ms}.truth.npz", f"{work}.truth.npz")
    result = run_cli(
        "--log-dir", tmp_path / "run",
        "calibrate", "--ms", work, "--field", "0", "--refant", "103", "--auto-fields",
        "--model-source", "catalog", "--bp-combine-field", "--combine-spw", "--prebp-phase",
        "--prebp-minsnr", "3.0", "--n-workers", "2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert (tmp_path / "A_bpcal").exists() and (tmp_path / "A_2gcal").exists()
    assert (tmp_path / "A.cal.mms").exists()
    assert "Traceback" not in result.stderr
    # the QA report of the calibrated MS lands in the run directory
    qa = json.loads((tmp_path / "run" / "qa" / "A" / "qa.json").read_text())
    assert qa["ms"] == str(tmp_path / "A.cal.mms")
    assert {"A_bpcal", "A_2gcal"} <= {Path(t["path"]).name for t in qa["caltables"]}
    assert qa["visibilities"]["calibrator"]["metrics"]["corrected_model_phase_scatter_deg"][
        "verdict"] == "good"  # fmt: skip
    assert (tmp_path / "run" / "qa" / "A" / "report.html").exists()
    assert "QA report:" in result.stdout

    target = make_observation("small", seed=8)
    result = run_cli(
        "apply", "--ms", target, "--field", "5", "--tables", "A_bpcal", "A_2gcal",
        "--out", tmp_path / "applied", "--n-workers", "2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    with table(str(tmp_path / "applied" / f"{target.stem}.cal.mms"), ack=False) as t:
        assert set(t.getcol("FIELD_ID")) == {5}


def test_dry_run_prints_the_plan_and_touches_nothing(corrupted_small, tmp_path):
    result = run_cli(
        "calibrate", corrupted_small, "--auto-fields", "--spw", "1~2", "--out", tmp_path / "o",
        "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "spw  1 bpcal" in result.stdout and "spw  0" not in result.stdout
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--refant", "DSA999"], "reference antenna 'DSA999' (a name) is not in"),
        (["--spw", "7"], "SPW selection '7' is out of range"),
        (["--field", "40"], "out of range"),
        (["--calibrator", "NOPE"], "NOPE"),
        (["--gain-solint", "inf", "--apply-solint", "30s"], "apply.gain_solint"),
    ],
)
def test_calibrate_bad_input_is_one_line(corrupted_small, tmp_path, args, message):
    before = column_digest(corrupted_small)
    result = run_cli("calibrate", corrupted_small, "--out", tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in one_error_line(result)
    assert column_digest(corrupted_small) == before


def test_refant_suggestion_names_antennas(corrupted_small, tmp_path):
    result = run_cli("calibrate", corrupted_small, "--refant", "DSA999", "--dry-run")
    assert "DSA001" in result.stderr and "try --refant DSA" in result.stderr


def test_apply_refuses_missing_and_mismatched_tables(calibrated, make_observation, tmp_path):
    _, summary, _ = calibrated
    bpcal = summary.observations[0].merged_tables["bpcal"]
    target = make_observation("small", seed=8)
    missing = run_cli("apply", "--ms", target, "--tables", tmp_path / "nope_bpcal")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    tiny = make_observation("tiny")
    mismatched = run_cli("apply", "--ms", tiny, "--tables", bpcal, "--out", tmp_path)
    assert mismatched.returncode == 2 and "another" in mismatched.stderr
    not_a_table = run_cli("apply", "--ms", target, "--tables", target)
    assert not_a_table.returncode == 2 and "not a CASA calibration table" in not_a_table.stderr


def test_fast_mode_solutions_stay_within_noise(corrupted_small, tmp_path, client):
    """Averaging 2 channels before solving: bandpass still matches the (averaged) truth."""
    _, summary = calibrate(
        corrupted_small, tmp_path, client, tmp_path / "run", fast={"enabled": True, "chanbin": 2}
    )
    assert summary.status == "ok"
    obs = summary.observations[0]
    truth = load_truth(corrupted_small)
    with table(obs.merged_tables["bpcal"], ack=False) as t:
        ant, spw = t.getcol("ANTENNA1"), t.getcol("SPECTRAL_WINDOW_ID")
        refant = t.getcol("ANTENNA2")[0]
        solution, flag = t.getcol("CPARAM"), t.getcol("FLAG")
    assert solution.shape[1] == truth.bandpass.shape[2] // 2
    averaged = truth.bandpass.reshape(*truth.bandpass.shape[:2], -1, 2, 2).mean(axis=3)
    expected = averaged[ant, spw] * np.exp(-1j * np.angle(averaged[refant, spw]))
    ratio = np.where(~flag, solution / expected, np.nan)
    ratio = ratio / np.nanmean(ratio, axis=1, keepdims=True)
    assert np.nanmedian(np.abs(np.abs(ratio) - 1)) < 0.02
    assert np.nanmedian(np.degrees(np.abs(np.angle(ratio)))) < 2.0
    fields = choose_fields(corrupted_small, CAL, SOLVE_FIELDS)
    assert corrected_model_scatter_deg(obs.output_mms, fields) < 5.0


def test_calibrator_and_targets_in_one_graph(corrupted_small, make_observation, tmp_path, client):
    """Two calibrator files and a target fan out together; the target uses the first's tables."""
    second, target = tmp_path / "second.ms", tmp_path / "target.ms"
    shutil.copytree(make_observation("small", seed=11), second)
    shutil.copytree(make_observation("small", seed=12, start_time="2026-01-01T21:00:00"), target)
    config = resolve_config(overrides={"engine": "casa"})  # its apply logs name the tables
    fields = {str(ms): choose_fields(ms, CAL, SOLVE_FIELDS) for ms in (corrupted_small, second)}
    plan = plan_calibration(
        [str(corrupted_small), str(second)], CAL, fields, "103", config, tmp_path / "out",
        targets=[str(target)],
    )  # fmt: skip
    summary = run_plan(plan, client, tmp_path / "run", CAL, progress=False)
    assert summary.status == "ok"
    roles = [o.role for o in summary.observations]
    assert roles == ["calibrator", "calibrator", "target"]
    for obs in summary.observations:
        assert obs.calibrated_spws == [0, 1, 2, 3]
    target_steps = summary.observations[2].steps
    assert [s["step"] for s in target_steps].count("apply") == 4
    apply_log = (tmp_path / "run" / "casa" / "target-spw02-apply.log").read_text()
    assert f"{corrupted_small.stem}_spw02_bpcal" in apply_log
    assert f"{corrupted_small.stem}_spw02_2gcal" in apply_log
    assert "second_spw" not in apply_log


def test_each_task_has_its_own_casa_log(calibrated):
    plan, summary, _ = calibrated
    run_dir = Path(summary.summary_path).parent
    bandpass_log = run_dir / "casa" / f"{plan.observations[0].stem}-spw02-bpcal.log"
    text = bandpass_log.read_text()
    assert "Begin Task: bandpass" in text and "spw=2" in text.replace(" ", "").replace('"', "")


def test_killed_run_leaves_no_product_and_a_rerun_completes(corrupted_small, tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dsa110_contimg.calibration.cli", "calibrate",
            str(corrupted_small), "--auto-fields", "--out", str(out),
            "--n-workers", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    work = out / f".{corrupted_small.stem}.cal.work"
    deadline = time.time() + 120
    while not list(work.glob("*.cal.mms/SUBMSS/*.ms")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / f"{corrupted_small.stem}.cal.mms").exists()
    for caltable in out.glob("*.caltables/*"):
        assert (caltable / "table.dat").exists(), f"half-written {caltable}"
    result = run_cli(
        "calibrate", corrupted_small, "--auto-fields", "--out", out, "--n-workers", "2"
    )
    assert result.returncode == 0, result.stderr
    assert (out / f"{corrupted_small.stem}.cal.mms").exists()
    assert not work.exists()
    assert not list(out.glob("**/.*partial-*")), "partial products of the killed run remain"


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_run_is_one_line_and_publishes_nothing(
    corrupted_small, tmp_path, signal_name, status
):
    """Ctrl-C (to the whole process group, as a terminal sends it) or SIGTERM to the driver."""
    import os
    import signal
    import time

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "dsa110_contimg", "calibrate", str(corrupted_small),
            "--auto-fields", "--out", str(out), "--n-workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    work = out / f".{corrupted_small.stem}.cal.work"
    deadline = time.time() + 120
    while not list(work.glob("products/*")) and time.time() < deadline:
        time.sleep(0.1)  # interrupted while solving: tables exist, unpublished
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if signal_name == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    contimg_lines = [line for line in stderr.splitlines() if line.startswith("contimg:")]
    assert len(contimg_lines) == 1 and "nothing was published" in contimg_lines[0], stderr
    assert len(stderr.splitlines()) <= 6, stderr
    published = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert published == [], f"products under final names after {signal_name}: {published}"
    assert not list(out.glob(".*.lock"))


def test_no_process_listens_beyond_loopback(corrupted_small, tmp_path):
    """Driver, scheduler, dashboard, workers and CASA inside them: 127.0.0.1 only."""
    import time

    import psutil

    argv = [sys.executable, "-m", "dsa110_contimg", "calibrate", str(corrupted_small),
            "--auto-fields", "--out", str(tmp_path / "out"), "--n-workers", "2",
            "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = psutil.Process(proc.pid)
    listening, casa_workers = set(), set()
    while proc.poll() is None:
        try:
            family = [driver, *driver.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in family:
            try:
                for c in member.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        listening.add((member.pid, c.laddr.ip))
                if any("casatools" in m.path for m in member.memory_maps()):
                    casa_workers.add(member.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.2)
    assert proc.wait() == 0, proc.stderr.read()
    assert casa_workers, "no process with CASA loaded was seen during the run"
    assert listening, "no listening socket seen: the sampling missed the run"
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::1"}, listening


def test_a_run_that_loses_antennas_is_degraded_and_says_why(make_observation, tmp_path):
    """Four of ten antennas dead: every solve keeps 60 % of its solutions. The run is
    'degraded' (exit 3), not 'ok', and names the antennas lost and why."""
    dead = ("DSA014", "DSA039", "DSA079", "DSA091")
    ms = make_observation("tiny", dead_antennas=dead, seed=6)
    result = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "calibrate", str(ms), "--calibrator",
         "0834+555", "--out", str(tmp_path / "cal"), "--n-workers", "1", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "degraded"
    (obs,) = summary["observations"]
    assert obs["outcome"] == "degraded" and obs["output_mms"]
    bandpass = [r for r in obs["degraded"] if r.startswith("bpcal/")]
    assert bandpass and all(name in bandpass[0] for name in dead)
    assert "minsnr" in bandpass[0]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("contimg: degraded:")]
    assert "kept" in line and "Traceback" not in result.stderr


def test_steps_rerun_after_a_lost_worker_keep_what_later_steps_wrote(make_observation, tmp_path):
    """Dask reruns a finished task whose result died with its worker. A rerun of prepare
    or assemble must leave the assembled Multi-MS (with the flags, models and corrections
    later steps wrote into it) as it is; a rerun of publish must not fail."""
    from dsa110_contimg.calibration import steps
    from dsa110_contimg.calibration.outcomes import OK, StepOutcome
    from dsa110_contimg.calibration.pipeline import claimed_outputs

    ms = make_observation("tiny", seed=3)
    config = resolve_config()
    fields = choose_fields(ms, CAL, SOLVE_FIELDS)
    plan = plan_calibration([str(ms)], CAL, {str(ms): fields}, "103", config, tmp_path / "out")
    (obs,) = plan.observations
    log_dir = tmp_path / "run"
    (log_dir / "casa").mkdir(parents=True)
    with claimed_outputs(plan.observations):
        prepared = [steps.prepare(obs, piece, config, log_dir) for piece in obs.pieces]
        assembled = steps.assemble(obs, prepared, config)
        assert assembled.ok
        mms = steps.work_mms(obs)
        marker = mms / "written-by-a-later-step"
        marker.write_text("model, flags, corrections")
        again = [steps.prepare(obs, piece, config, log_dir) for piece in obs.pieces]
        assert all(o.ok for o in again)
        assert steps.assemble(obs, again, config).ok
        assert marker.read_text() == "model, flags, corrections"
        applied = [StepOutcome(obs.ms, p.spw, "apply", OK) for p in obs.pieces]
        finished = steps.publish(obs, config, assembled, applied)
        assert finished.ok and Path(obs.output_mms).exists()
        rerun = steps.publish(obs, config, assembled, applied)
        assert rerun.ok and rerun.detail["output_mms"] == obs.output_mms
        assert not Path(obs.work_dir).exists()


def test_native_flags_equal_flagdata(corrupted_small, tmp_path):
    """Autocorrelations and zeros flagged as CASA's flagdata flags them: a zero in one
    correlation, a whole channel of zeros, NaN and infinity flagged; a zero real part
    alone not; FLAG_ROW set for autocorrelations only; flags already there kept."""
    from dsa110_contimg.calibration.native_flag import flag_autocorrelations_and_zeros
    from dsa110_contimg.casa.tasks import run_flagdata

    copies = [tmp_path / "casa.ms", tmp_path / "native.ms"]
    for copy in copies:
        shutil.copytree(corrupted_small, copy)
        with table(str(copy), readonly=False, ack=False) as t:
            cross = np.flatnonzero(t.getcol("ANTENNA1") != t.getcol("ANTENNA2"))
            data, flag = t.getcol("DATA"), np.zeros_like(t.getcol("FLAG"))
            data[cross[0], 2, 0] = 0
            data[cross[1], 3, :] = 0
            data[cross[2], 1, 1] = np.nan
            data[cross[3], 0, 0] = np.inf
            data[cross[4], 1, 0] = 1j
            flag[cross[5], 4, 1] = True
            t.putcol("DATA", data)
            t.putcol("FLAG", flag)
            t.putcol("FLAG_ROW", np.zeros(t.nrows(), bool))
    run_flagdata(str(copies[0]), ("autocorr", "zeros"))
    flag_autocorrelations_and_zeros(str(copies[1]), ("autocorr", "zeros"))
    (casa_flag, casa_row), (native_flag, native_row) = (
        (table(str(c), ack=False).getcol("FLAG"), table(str(c), ack=False).getcol("FLAG_ROW"))
        for c in copies
    )
    np.testing.assert_array_equal(native_flag, casa_flag)
    np.testing.assert_array_equal(native_row, casa_row)
    assert casa_flag[cross[0], 2, 0] and casa_flag[cross[1], 3].all() and casa_flag[cross[5], 4, 1]
    assert not casa_flag[cross[4], 1, 0] and casa_row.any() and not casa_row[cross].any()


@pytest.mark.parametrize(
    "gains", [{"calmode": "a"}, {"uvrange": ">150m"}, {"uvrange": "0.1~2km", "calmode": "p"}]
)
def test_native_gain_options_equal_casa(calibrated, tmp_path, gains):
    """Gain options after the bandpass, at 'inf' and 60 s: CASA gaincal and the native solve
    on the same sub-MS give the same table (amplitude-only: phases zero in both)."""
    from dsa110_contimg.calibration import native, solve_request
    from dsa110_contimg.calibration.recipe import applied_tables, solve_parameters
    from dsa110_contimg.casa.tasks import run_gaincal
    from dsa110_contimg.ms.mms import sub_ms_paths

    plan, summary, _ = calibrated
    obs = plan.observations[0]
    config = resolve_config(overrides={"gains": gains})
    bpcal = summary.observations[0].merged_tables["bpcal"]
    vis = str(sub_ms_paths(obs.output_mms)[1])
    for step in ("gpcal", "2gcal"):
        _, parameters = solve_parameters(step, obs, config, combined=False)
        parameters["spw"] = "1"
        parameters.update(applied_tables(["bpcal"], {"bpcal": bpcal}, obs.n_spw_total))
        casa_table, native_table = tmp_path / f"{step}.casa", tmp_path / f"{step}.native"
        run_gaincal(vis, str(casa_table), str(tmp_path / f"{step}.log"), **parameters)
        request = solve_request.request_from_parameters("gaincal", parameters)
        native.solve_to_caltable(vis, str(native_table), request)
        sa, sb, good = assert_solutions_agree(casa_table, native_table, step)
        assert good.sum() >= 40, step  # both polarisations of most of the 24 antennas
        if "uvrange" in gains:  # the range leaves baselines out: the SNR drops without them
            everything = tmp_path / f"{step}.all"
            whole = dataclasses.replace(request, uv_range=(0.0, np.inf, True))
            native.solve_to_caltable(vis, str(everything), whole)
            with table(str(everything), ack=False).sort("TIME, ANTENNA1") as sc:
                snr = sb.getcol("SNR")[good] / sc.getcol("SNR")[good]
            assert np.median(snr) < 0.97, step
        if gains.get("calmode") != "a":
            continue
        for solutions in (sa, sb):
            assert np.abs(np.angle(solutions.getcol("CPARAM")[good])).max() < 1e-6, step
        assert np.abs(np.abs(sb.getcol("CPARAM")[good]) - 1).max() > 0.01, "amplitudes solved"


@pytest.mark.parametrize("solint", ["inf", "60s", "int"])
def test_native_delays_equal_casa(calibrated, corrupted_small, tmp_path, solint):
    """gaintype K after the pre-bandpass phases: CASA gaincal and the native FFT delays on
    the same sub-MS give the same table (several integrations an interval: CASA's
    multi-band path; one: its single-buffer path), and they recover the simulated delays."""
    from dsa110_contimg.calibration import native, solve_request
    from dsa110_contimg.calibration.recipe import applied_tables, solve_parameters
    from dsa110_contimg.casa.tasks import run_gaincal
    from dsa110_contimg.ms.mms import sub_ms_paths
    from dsa110_contimg.ms.reads import chan_freq_hz

    plan, summary, _ = calibrated
    obs = plan.observations[0]
    config = resolve_config(overrides={"delay": {"enabled": True, "solint": solint}})
    prebp = summary.observations[0].merged_tables["prebp"]
    vis = str(sub_ms_paths(obs.output_mms)[1])
    _, parameters = solve_parameters("kcal", obs, config, combined=False)
    parameters["spw"] = "1"
    parameters.update(applied_tables(["prebp"], {"prebp": prebp}, obs.n_spw_total))
    casa_table, native_table = tmp_path / "kcal.casa", tmp_path / "kcal.native"
    run_gaincal(vis, str(casa_table), str(tmp_path / "kcal.log"), **parameters)
    request = solve_request.request_from_parameters("gaincal", parameters)
    assert request.kind == "K"
    native.solve_to_caltable(vis, str(native_table), request)
    order = "TIME, ANTENNA1"
    with table(str(casa_table), ack=False) as a, table(str(native_table), ack=False) as b:
        assert b.getkeywords()["VisCal"] == "K Jones" and "FPARAM" in b.colnames()
        sa, sb = a.sort(order), b.sort(order)
        flag = sa.getcol("FLAG")
        np.testing.assert_array_equal(sb.getcol("FLAG"), flag)
        assert (~flag).sum() >= 40 * (sa.nrows() // len(set(sa.getcol("ANTENNA1"))))
        delays = sb.getcol("FPARAM")
        np.testing.assert_allclose(delays[~flag], sa.getcol("FPARAM")[~flag], atol=1e-3)
        np.testing.assert_allclose(sb.getcol("TIME"), sa.getcol("TIME"), atol=0.01)
        for column in ("FIELD_ID", "SCAN_NUMBER", "ANTENNA2", "SPECTRAL_WINDOW_ID"):
            np.testing.assert_array_equal(sb.getcol(column), sa.getcol(column), column)
        antenna = sb.getcol("ANTENNA1")
    for name in (casa_table, native_table):  # the frequency the delays are applied about
        with table(f"{name}/SPECTRAL_WINDOW", ack=False) as spw:
            centres = spw.getcol("CHAN_FREQ")[:, 0]
        np.testing.assert_allclose(centres, [np.mean(f) for f in chan_freq_hz(vis)])
    # the simulated delays (the bandpass phase slope, against the reference) within 1 ns
    truth = load_truth(corrupted_small)
    freq = chan_freq_hz(vis)[0]
    phase = np.unwrap(np.angle(truth.bandpass[:, 1]), axis=1)  # (ant, chan, pol)
    slope = np.polyfit(freq - freq.mean(), phase.transpose(1, 0, 2).reshape(len(freq), -1), 1)[0]
    true_delay = (slope / (2 * np.pi) * 1e9).reshape(phase.shape[0], phase.shape[2])
    true_delay -= true_delay[truth.antenna_names.index(obs.refant)]
    error = np.where(flag[:, 0, :], np.nan, delays[:, 0, :] - true_delay[antenna])
    # each antenna's median over the intervals (one integration each is noisy)
    solved = np.unique(antenna[~flag[:, 0, :].all(axis=1)])
    per_antenna = [np.nanmedian(error[antenna == a], axis=0) for a in solved]
    assert np.nanmedian(np.abs(per_antenna)) < 1.0


def test_native_gains_combined_over_spws_equal_casa(calibrated, tmp_path):
    """combine 'spw' (with scan, field), at 'inf' and 60 s, after the per-SPW bandpass: CASA
    gaincal and the native solve on the Multi-MS give the same table, under the first SPW."""
    from dsa110_contimg.calibration import native, solve_request
    from dsa110_contimg.calibration.recipe import applied_tables, solve_parameters
    from dsa110_contimg.casa.tasks import run_gaincal

    plan, summary, _ = calibrated
    obs = plan.observations[0]
    config = resolve_config(overrides={"combine_spw": True})
    bpcal = summary.observations[0].merged_tables["bpcal"]
    for step in ("gpcal", "2gcal"):
        _, parameters = solve_parameters(step, obs, config, combined=True)
        parameters["spw"] = "0,1,2,3"
        parameters.update(applied_tables(["bpcal"], {"bpcal": bpcal}, obs.n_spw_total))
        casa_table, native_table = tmp_path / f"{step}.casa", tmp_path / f"{step}.native"
        run_gaincal(obs.output_mms, str(casa_table), str(tmp_path / f"{step}.log"), **parameters)
        request = solve_request.request_from_parameters("gaincal", parameters)
        assert request.spws == (0, 1, 2, 3)
        native.solve_to_caltable(obs.output_mms, str(native_table), request)
        sa, sb, good = assert_solutions_agree(casa_table, native_table, step)
        assert good.sum() >= 40, step
        np.testing.assert_array_equal(sb.getcol("SPECTRAL_WINDOW_ID"), 0)
        np.testing.assert_array_equal(sa.getcol("SPECTRAL_WINDOW_ID"), 0)
        np.testing.assert_allclose(sb.getcol("TIME"), sa.getcol("TIME"), atol=0.01)
        np.testing.assert_array_equal(sb.getcol("FIELD_ID"), sa.getcol("FIELD_ID"))
        snr_ratio = sb.getcol("SNR")[good] / sa.getcol("SNR")[good]
        assert abs(np.median(snr_ratio) - 1) < 0.01, step


def test_native_engine_runs_the_recipe_with_gains_combined_over_spws(corrupted_small, tmp_path,
                                                                      client):  # fmt: skip
    """combine_spw through the whole graph: a task per combined solve, each reading its rows."""
    _, summary = calibrate(corrupted_small, tmp_path / "out", client, tmp_path / "run",
                           engine="native", combine_spw=True)  # fmt: skip
    assert summary.status == "ok", summary.failure_lines()
    obs = summary.observations[0]
    casa_logs = [p.name for p in (tmp_path / "run" / "casa").glob("*.log")]
    assert not [n for n in casa_logs if n.endswith(("gcal.log", "prebp.log"))], casa_logs
    with table(obs.merged_tables["2gcal"], ack=False) as gains:
        np.testing.assert_array_equal(np.unique(gains.getcol("SPECTRAL_WINDOW_ID")), [0])
    amp_error, phase_error, kept = bandpass_errors(corrupted_small, obs.merged_tables["bpcal"])
    assert amp_error < 0.02 and phase_error < 2.0 and kept > 0.97
    assert corrected_model_scatter_deg(obs.output_mms, plan_fields(corrupted_small)) < 10


@pytest.mark.parametrize(
    "option", [{"delay": {"enabled": True}}, {"fast": {"enabled": True, "chanbin": 2}}],
    ids=["delays", "fast"],
)  # fmt: skip
def test_native_engine_equals_casa_with_the_recipes_options(corrupted_small, tmp_path, client,
                                                           option):  # fmt: skip
    """The recipe with its delay step, or solving on data averaged in frequency, each engine
    whole: delays within 0.05 ns; bandpass and gains solved after them, and CORRECTED_DATA,
    as without the option; the native run leaves no CASA solve log."""
    runs = {}
    for engine in ("casa", "native"):
        run_dir = tmp_path / f"run-{engine}"
        _, runs[engine] = calibrate(corrupted_small, tmp_path / engine, client, run_dir,
                                    engine=engine, **option)  # fmt: skip
        assert runs[engine].status == "ok", runs[engine].failure_lines()
    casa_logs = [p.name for p in (tmp_path / "run-native" / "casa").glob("*.log")]
    assert not [n for n in casa_logs if n.endswith(("cal.log", "prebp.log"))], casa_logs
    casa_obs, native_obs = runs["casa"].observations[0], runs["native"].observations[0]
    assert set(native_obs.merged_tables) == set(casa_obs.merged_tables)
    if "delay" in option:
        order = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
        with (table(casa_obs.merged_tables["kcal"], ack=False) as a,
              table(native_obs.merged_tables["kcal"], ack=False) as b):  # fmt: skip
            sa, sb = a.sort(order), b.sort(order)
            flag = sa.getcol("FLAG")
            np.testing.assert_array_equal(sb.getcol("FLAG"), flag)
            assert (~flag).mean() > 0.15  # the antennas with data, of every station
            np.testing.assert_allclose(sb.getcol("FPARAM")[~flag], sa.getcol("FPARAM")[~flag],
                                       atol=0.05)  # fmt: skip
    for step in ("prebp", "bpcal", "gpcal", "2gcal"):
        assert_solutions_agree(casa_obs.merged_tables[step], native_obs.merged_tables[step], step)
    assert_corrected_agree(casa_obs.output_mms, native_obs.output_mms)
    if "delay" in option:
        bandpass = native_obs.merged_tables["bpcal"]
        amp_error, phase_error, kept = bandpass_errors(corrupted_small, bandpass)
        assert amp_error < 0.02 and phase_error < 2.0 and kept > 0.97


@pytest.mark.parametrize("engine", ["casa", "native"])
def test_qa_sums_kept_by_the_run_equal_the_reports_own_pass(engine, request, tmp_path,
                                                            monkeypatch):  # fmt: skip
    """Each SPW's QA pass, computed on a worker as the SPW finished (by the native apply
    from the chunks it writes), gives the report the same figures as reading the
    calibrated MS again; the run's report reads no visibility."""
    from dsa110_contimg.qa import report
    from dsa110_contimg.qa.graph import spw_visibility_qa_path
    from dsa110_contimg.qa.runner import qa_of_calibration_run, saved_visibility_qa

    fixture = {"casa": "calibrated", "native": "calibrated_native"}[engine]
    summary = request.getfixturevalue(fixture)[1]
    obs = summary.observations[0]
    run_dir = Path(summary.output_dir) / "run"
    saved = [spw_visibility_qa_path(run_dir, obs.stem, spw) for spw in obs.calibrated_spws]
    assert all(path.exists() for path in saved), saved
    assert "qa" in obs.step_seconds
    own_pass = saved_visibility_qa(run_dir, obs.stem, obs.output_mms)  # what the report uses
    assert own_pass is not None
    kept = report.run_qa(obs.output_mms, calibrator=CAL, visibility_qa=own_pass)
    fresh = report.run_qa(obs.output_mms, calibrator=CAL)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the report read the calibrated MS again")

    monkeypatch.setattr(report, "compute_visibility_qa", no_second_pass)
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "qa", copy / "qa")
    assert len(qa_of_calibration_run(summary, CAL, copy)) == 1  # a failed QA is left out
    kept_items, fresh_items = (_leaves(r.summary["visibilities"]) for r in (kept, fresh))
    assert [k for k, _ in kept_items] == [k for k, _ in fresh_items]
    for (key, a), (_, b) in zip(kept_items, fresh_items, strict=True):
        if isinstance(a, float) or isinstance(b, float):  # sums added in another order
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=key)
        else:
            assert a == b, key


def test_qa_in_the_native_apply_equals_a_pass_over_what_it_wrote(calibrated_native, tmp_path):
    """The QA sums the native apply adds up from the chunks it writes equal a QA pass
    reading the corrected sub-MS back (DATA, MODEL_DATA, CORRECTED_DATA, the new FLAG)."""
    from dsa110_contimg.calibration.native_apply import apply_to_corrected, native_tables
    from dsa110_contimg.ms.mms import sub_ms_paths
    from dsa110_contimg.phasing.view import calibrator_view
    from dsa110_contimg.qa.graph import QAContext, compute_visibility_qa

    obs = calibrated_native[1].observations[0]
    sub_ms = tmp_path / "spw.ms"
    shutil.copytree(sub_ms_paths(obs.output_mms)[0], sub_ms)
    with table(str(sub_ms), ack=False) as main:
        spw = int(main.getcol("DATA_DESC_ID", 0, 1)[0])
    gaintable = [obs.merged_tables[s] for s in ("bpcal", "gpcal", "2gcal")]
    tables = native_tables(str(sub_ms), spw, gaintable, ["nearest", "linear", "linear"], [],
                           calwt=False)  # fmt: skip
    view = calibrator_view(str(sub_ms), CAL, True)
    detail = apply_to_corrected(str(sub_ms), spw, tables, QAContext.of(str(sub_ms), view))
    (mine,), present = detail["qa"]
    (fresh,), fresh_present = compute_visibility_qa(str(sub_ms), view)
    assert present == fresh_present == ["MODEL_DATA", "CORRECTED_DATA"]
    assert mine.spw == fresh.spw == spw
    for i, (a, b) in enumerate(zip(mine.partials.arrays(), fresh.partials.arrays(),
                                   strict=True)):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=str(i))
    assert np.abs(fresh.partials.arrays()[0]).sum() > 0
    np.testing.assert_allclose(mine.model_coherence, fresh.model_coherence, rtol=1e-9)


def _leaves(value, key=""):
    """(path, value) of every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        return [item for k in sorted(value) for item in _leaves(value[k], f"{key}/{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _leaves(v, f"{key}/{i}")]
    return [(key, value)]
