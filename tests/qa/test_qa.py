"""QA: kernels against numpy, scores, calibrated vs uncalibrated data, bad input, the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import dask
import numpy as np
import pytest
from casacore.tables import table
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SOLVE_FIELDS
from dsa110_contimg.calibration.config import resolve_config
from dsa110_contimg.calibration.pipeline import plan_calibration, run_plan
from dsa110_contimg.ms.reads import main_columns
from dsa110_contimg.phasing.geometry import choose_fields
from dsa110_contimg.phasing.model import add_model_write_graph
from dsa110_contimg.phasing.rephase import plan_rephase, rephase_and_model
from dsa110_contimg.qa import caltable_kernels as ck
from dsa110_contimg.qa import visibility_kernels as vk
from dsa110_contimg.qa import visibility_metrics as vm
from dsa110_contimg.qa.graph import compute_visibility_qa
from dsa110_contimg.qa.html import render_report, write_report
from dsa110_contimg.qa.report import run_qa
from dsa110_contimg.qa.scores import DEFAULT_THRESHOLDS, Threshold, describe, score_value
from dsa110_contimg.sky.calibrators import lookup_calibrator

CAL = lookup_calibrator("0834+555")
DEAD = "DSA012"


# --- kernels against direct numpy computations ---------------------------------------------


def reference_metrics(data, model, corrected, flag, weight, ant1, ant2):
    """The metrics of one field, computed directly with numpy (no partial sums)."""
    cross = (ant1 != ant2)[:, None, None] & np.ones(data.shape, bool)
    w = np.broadcast_to(weight[:, None, :], data.shape)
    unflagged = cross & ~flag
    finite = np.isfinite(data)
    used = unflagged & finite & (data != 0) & (w > 0) & np.isfinite(w)
    out = {
        "flagged_fraction": flag[cross].mean() if cross.any() else np.nan,
        "zero_fraction": (unflagged & finite & (data == 0)).sum() / unflagged.sum()
        if unflagged.any() else np.nan,
        "nonfinite_fraction": (unflagged & ~finite).sum() / unflagged.sum()
        if unflagged.any() else np.nan,
    }  # fmt: skip
    with_model = used & np.isfinite(model) & (model != 0)
    c_ok = used & np.isfinite(corrected) & (corrected != 0)
    with_both = with_model & c_ok

    def scatter(x, m, mask):
        if not mask.any():
            return np.nan
        phasor = np.exp(1j * (np.angle(x[mask]) - np.angle(m[mask])))
        r = np.abs(np.sum(w[mask] * phasor)) / np.sum(w[mask])
        return np.degrees(np.sqrt(max(-2 * np.log(min(max(r, 1e-300), 1.0)), 0.0)))

    out["data_model_phase_scatter_deg"] = scatter(data, model, with_model)
    out["corrected_model_phase_scatter_deg"] = scatter(corrected, model, with_both)
    out["ratio_dm"] = np.abs(data[with_model]) / np.abs(model[with_model])
    out["ratio_cm"] = np.abs(corrected[with_both]) / np.abs(model[with_both])
    out["ratio_cd"] = np.abs(corrected[c_ok]) / np.abs(data[c_ok])
    out["corrected_filled_fraction"] = c_ok.sum() / used.sum() if used.any() else np.nan
    vector = np.abs(np.where(used, data, 0).sum(axis=1)).sum()
    scalar = np.abs(np.where(used, data, 0)).sum()
    out["data_spectral_coherence"] = vector / scalar if scalar > 0 else np.nan
    return out


def assert_median_matches(kernel_value, ratios):
    """The histogram median lies within one bin (< 0.8 %) of the middle sample(s)."""
    if len(ratios) == 0:
        assert np.isnan(kernel_value)
        return
    ordered = np.sort(ratios)
    lower, upper = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    tolerance = 1 + 2.0**-vk.RATIO_MANTISSA_BITS
    lo, hi = vk.RATIO_LIMITS
    assert np.clip(lower, lo, hi) / tolerance <= kernel_value <= np.clip(upper, lo, hi) * tolerance


def random_chunk(rng, n_row, n_chan, n_corr, n_ant=5):
    shape = (n_row, n_chan, n_corr)
    data = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    model = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    corrected = (data * rng.uniform(0.5, 2, size=shape)).astype(np.complex64)
    flag = rng.random(shape) < 0.2
    data[rng.random(shape) < 0.05] = 0
    data[rng.random(shape) < 0.05] = np.nan
    model[rng.random(shape) < 0.05] = 0
    corrected[rng.random(shape) < 0.05] = np.nan
    weight = rng.uniform(0.5, 2, size=(n_row, n_corr)).astype(np.float32)
    weight[rng.random((n_row, n_corr)) < 0.1] = 0
    ant1, ant2 = rng.integers(0, n_ant, n_row), rng.integers(0, n_ant, n_row)
    uvw = rng.normal(0, 300, size=(n_row, 3))
    return data, model, corrected, flag, weight, ant1, ant2, uvw


def check_against_reference(chunk, metrics):
    data, model, corrected, flag, weight, ant1, ant2, _ = chunk
    ref = reference_metrics(data, model, corrected, flag, weight, ant1, ant2)
    for key in ("flagged_fraction", "zero_fraction", "nonfinite_fraction",
                "data_model_phase_scatter_deg", "corrected_model_phase_scatter_deg",
                "corrected_filled_fraction", "data_spectral_coherence"):  # fmt: skip
        # a circular std near zero is sqrt(-2 ln R): float32 inputs leave ~0.03 deg there
        atol = 0.1 if key.endswith("_deg") else 1e-5
        np.testing.assert_allclose(metrics[key], ref[key], rtol=1e-4, atol=atol, err_msg=key)
    assert_median_matches(metrics["median_data_model_amp_ratio"], ref["ratio_dm"])
    assert_median_matches(metrics["median_corrected_model_amp_ratio"], ref["ratio_cm"])
    assert_median_matches(metrics["median_corrected_data_amp_ratio"], ref["ratio_cd"])


@settings(max_examples=40, deadline=None)
@given(
    n_row=st.integers(1, 40), n_chan=st.integers(1, 9), n_corr=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_visibility_kernel_matches_numpy_on_random_shapes(n_row, n_chan, n_corr, seed):
    chunk = random_chunk(np.random.default_rng(seed), n_row, n_chan, n_corr)
    data, model, corrected, flag, weight, ant1, ant2, uvw = chunk
    field_id = np.zeros(n_row, int)
    partials = vk.visibility_partials(
        data, model, corrected, flag, weight, ant1, ant2, field_id, uvw, 1, 5, 1000.0
    )
    check_against_reference(chunk, vm.finalise_visibility_metrics(partials))


def test_histograms_match_numpy_binning():
    rng = np.random.default_rng(9)
    chunk = random_chunk(rng, 300, 8, 2)
    data, model, corrected, flag, weight, ant1, ant2, uvw = chunk
    partials = vk.visibility_partials(
        data, model, corrected, flag, weight, ant1, ant2, np.zeros(300, int), uvw, 1, 5, 1e3
    )
    cross = (ant1 != ant2)[:, None, None]
    w = np.broadcast_to(weight[:, None, :], data.shape)
    used = cross & ~flag & np.isfinite(data) & (data != 0) & (w > 0)
    with_model = used & np.isfinite(model) & (model != 0)
    sampled = with_model & (vk.phase_sampled_baseline(ant1, ant2) == 1)[:, None, None]
    phase = np.angle(data[sampled] * np.conj(model[sampled]))
    expected, _ = np.histogram(phase, bins=np.radians(vm.phase_histogram_edges_deg()))
    # a phase within 1e-5 rad of a bin edge may land in the neighbouring bin
    assert np.abs(partials.phase_hist_data_model[0] - expected).sum() <= 2
    ratio = np.abs(data[with_model]) / np.abs(model[with_model])
    expected = np.bincount(vm.ratio_bins_of(ratio), minlength=vk.RATIO_BINS)
    np.testing.assert_array_equal(partials.hist_data_model[0], expected)
    edges = vm.ratio_bin_edges()
    inside = (ratio > vk.RATIO_LIMITS[0]) & (ratio < vk.RATIO_LIMITS[1])
    k = vm.ratio_bins_of(ratio[inside])
    assert np.all((edges[k] <= ratio[inside]) & (ratio[inside] < edges[k + 1]))
    assert np.all(edges[1:] / edges[:-1] <= 1 + 2.0**-vk.RATIO_MANTISSA_BITS + 1e-9)


def test_partials_add_across_chunks_and_fields_split():
    rng = np.random.default_rng(3)
    chunk = random_chunk(rng, 200, 6, 2)
    data, model, corrected, flag, weight, ant1, ant2, uvw = chunk
    field_id = rng.integers(0, 3, 200)
    whole = vk.visibility_partials(
        data, model, corrected, flag, weight, ant1, ant2, field_id, uvw, 3, 5, 1000.0
    )
    parts = [
        vk.visibility_partials(
            *(a[s] for a in (data, model, corrected, flag, weight, ant1, ant2, field_id, uvw)),
            3, 5, 1000.0,
        )
        for s in (slice(0, 70), slice(70, 71), slice(71, 200))
    ]  # fmt: skip
    summed = parts[0] + parts[1] + parts[2]
    for a, b in zip(whole.arrays(), summed.arrays(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    for f in range(3):
        rows = field_id == f
        sub = tuple(a[rows] for a in chunk)
        check_against_reference(sub, vm.finalise_visibility_metrics(whole, f))


def test_kernel_without_model_or_corrected_and_all_flagged():
    chunk = random_chunk(np.random.default_rng(5), 30, 4, 2)
    data, _, _, flag, weight, ant1, ant2, uvw = chunk
    partials = vk.visibility_partials(
        data, None, None, np.ones_like(flag), weight, ant1, ant2, np.zeros(30, int), uvw, 1, 5, 1e3
    )
    metrics = vm.finalise_visibility_metrics(partials)
    assert metrics["n_used"] == 0
    assert metrics["flagged_fraction"] == 1.0
    assert np.isnan(metrics["data_model_phase_scatter_deg"])
    assert np.isnan(metrics["median_corrected_data_amp_ratio"])


def test_decorrelation_and_uv_profile_see_phase_errors_growing_with_baseline():
    rng = np.random.default_rng(7)
    n_row = 4000
    uvw = np.zeros((n_row, 3))
    uvw[:, 0] = rng.uniform(0, 1000, n_row)
    model = np.ones((n_row, 4, 2), np.complex64)
    sigma = np.radians(60) * uvw[:, 0] / 1000  # phase error grows with baseline length
    data = model * np.exp(1j * rng.normal(0, 1, (n_row, 4, 2)) * sigma[:, None, None])
    ant1, ant2 = np.zeros(n_row, int), np.ones(n_row, int)
    partials = vk.visibility_partials(
        data, model, model, np.zeros(data.shape, bool), np.ones((n_row, 2), np.float32),
        ant1, ant2, np.zeros(n_row, int), uvw, 1, 2, 1000.0,
    )  # fmt: skip
    profile = vm.uv_profile(partials, 1000.0)
    coherence = np.array(profile["data_model_coherence"])
    expected = np.exp(-0.5 * (np.radians(60) * np.array(profile["uv_centre_m"]) / 1000) ** 2)
    np.testing.assert_allclose(coherence, expected, atol=0.03)
    assert vm.decorrelation(profile, "data_model_coherence") < 0.8
    assert vm.decorrelation(profile, "corrected_model_coherence") == pytest.approx(1.0)


def test_caltable_kernel_against_numpy():
    rng = np.random.default_rng(11)
    n_ant, n_chan = 6, 8
    antenna = np.arange(n_ant)
    values = (1 + 0.05 * rng.normal(size=(n_ant, n_chan, 2))) * np.exp(
        1j * rng.normal(0, 0.1, (n_ant, n_chan, 2))
    )
    flag = rng.random((n_ant, n_chan, 2)) < 0.1
    flag[2] = True  # a dead antenna
    snr = rng.uniform(5, 50, (n_ant, n_chan, 2))
    m = ck.spw_solution_metrics(values, flag, snr, antenna, n_ant, "B")
    assert m["flagged_fraction"] == pytest.approx(flag.mean())
    assert m["fully_flagged_antennas"] == [2]
    assert m["snr_median"] == pytest.approx(np.median(snr[~flag]))
    assert m["amp_median"] == pytest.approx(np.median(np.abs(values[~flag])))
    assert m["amp_out_of_range_fraction"] == 0.0
    assert 0.02 < m["bandpass_amp_roughness"] < 0.1  # 5 % white scatter per channel


def test_bandpass_truth_errors_remove_the_refant_phase_and_the_scale():
    rng = np.random.default_rng(2)
    truth = np.exp(1j * rng.normal(0, 0.5, (4, 1, 8, 2))) * rng.uniform(0.8, 1.2, (4, 1, 8, 2))
    refant = 1
    solution = truth[:, 0] * np.exp(-1j * np.angle(truth[refant, 0])) * 1.7 * np.exp(0.3j)
    errors = ck.bandpass_truth_errors(
        solution, np.zeros(solution.shape, bool), np.arange(4), np.zeros(4, int), refant, truth
    )
    assert errors["amp_error"] < 1e-9 and errors["phase_error_deg"] < 1e-6
    noisy = solution * (1 + 0.03 * rng.normal(size=solution.shape))
    errors = ck.bandpass_truth_errors(
        noisy, np.zeros(solution.shape, bool), np.arange(4), np.zeros(4, int), refant, truth
    )
    assert 0.01 < errors["amp_error"] < 0.04


# --- scores ----------------------------------------------------------------------------------


def test_scores_follow_the_pipeline_convention():
    lower = Threshold("x", 0, 10, 20, 40, 100)
    assert score_value(0, lower) == 1.0
    assert score_value(10, lower) == pytest.approx(0.9)
    assert score_value(15, lower) == pytest.approx(0.78)
    assert score_value(40, lower) == pytest.approx(0.33)
    assert score_value(1000, lower) == 0.0
    higher = Threshold("y", 1, 0.99, 0.9, 0.5, 0)
    assert score_value(0.995, higher) == pytest.approx(0.95)
    assert score_value(0.5, higher) == pytest.approx(0.33)
    ratio = Threshold("r", 1, 2, 5, 10, 100, ratio=True)
    assert score_value(0.5, ratio) == pytest.approx(score_value(2.0, ratio)) == pytest.approx(0.9)
    assert np.isnan(score_value(float("nan"), lower))
    line = describe(25.0, lower, score_value(25.0, lower))
    assert "warning" in line and "warning limit 20" in line
    assert "good limit 10" in describe(5.0, lower, score_value(5.0, lower))


def test_phase_thresholds_depend_on_the_phasing_context():
    aligned = DEFAULT_THRESHOLDS["phase_scatter_aligned_deg"]
    offset = DEFAULT_THRESHOLDS["phase_scatter_offset_deg"]
    assert score_value(100, aligned) < 0.66  # a phased calibrator at 100 deg is a problem
    assert score_value(100, offset) > 0.9  # an offset one at 100 deg is expected
    assert score_value(130, offset) <= 0.66


# --- synthetic observations ------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_with_dead_antenna(make_observation, tmp_path_factory, client):
    ms = make_observation("small", stem="dead", dead_antennas=(DEAD,))
    out = tmp_path_factory.mktemp("qa_cal")
    fields = choose_fields(ms, CAL, SOLVE_FIELDS)
    plan = plan_calibration([str(ms)], CAL, {str(ms): fields}, "103", resolve_config(), out)
    summary = run_plan(plan, client, out / "run", CAL, progress=False)
    obs = summary.observations[0]
    assert summary.status == "ok"
    tables = [obs.merged_tables[s] for s in ("bpcal", "2gcal")]
    return ms, obs.output_mms, tables, out


def test_dask_pass_equals_numpy_on_the_whole_ms(calibrated_with_dead_antenna):
    _, mms, _, _ = calibrated_with_dead_antenna
    results, present = compute_visibility_qa(mms, row_chunk=1000)
    assert present == ["MODEL_DATA", "CORRECTED_DATA"]
    with table(mms, ack=False) as t:
        columns = {c: t.getcol(c) for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG",
                                            "WEIGHT", "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW",
                                            "DATA_DESC_ID")}  # fmt: skip
    from dsa110_contimg.ms.antennas import array_of
    from dsa110_contimg.ms.reads import spw_of_ddid

    spw_of_row = spw_of_ddid(mms)[columns["DATA_DESC_ID"]]
    n_field = int(columns["FIELD_ID"].max()) + 1
    for result in results:
        rows = spw_of_row == result.spw
        direct = vk.visibility_partials(
            *(columns[c][rows] for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT",
                                         "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW")),
            n_field, result.partials.antenna.shape[1], array_of(mms).uv_max_m(),
        )  # fmt: skip
        for a, b in zip(direct.arrays(), result.partials.arrays(), strict=True):
            np.testing.assert_allclose(a[: len(b)], b, rtol=1e-9, atol=1e-6)


def test_uncalibrated_data_scores_poorly_calibrated_corrected_scores_good(
    calibrated_with_dead_antenna,
):
    ms, mms, tables, _ = calibrated_with_dead_antenna
    summary = run_qa(mms, tables, CAL, truth=f"{ms}.truth.npz").summary
    cal = summary["visibilities"]["calibrator"]["metrics"]
    assert cal["data_model_phase_scatter_deg"]["verdict"] in ("warning", "error")
    assert not cal["data_model_phase_scatter_deg"]["in_overall"]  # it describes the input
    after_keys = (
        "corrected_model_phase_scatter_deg",
        "corrected_model_amp_ratio",
        "corrected_filled_fraction",
        "corrected_decorrelation",
        "model_coherence",
    )
    for key in after_keys:
        assert cal[key]["verdict"] == "good", cal[key]["line"]
    assert cal["corrected_model_phase_scatter_deg"]["value"] < 15
    for spw in summary["visibilities"]["spws"]:
        assert (
            spw["calibrator"]["metrics"]["corrected_model_phase_scatter_deg"]["verdict"] == "good"
        )
    # The dead antenna: fully flagged in every table and in the visibilities; a warning.
    bpcal, gcal = summary["caltables"]
    assert bpcal["kind"] == "B" and gcal["kind"] == "G"
    assert bpcal["fully_flagged_antennas"] == [DEAD] == gcal["fully_flagged_antennas"]
    for s in bpcal["spws"]:
        assert s["metrics"]["n_fully_flagged_antennas"]["verdict"] == "warning"
        assert s["info"]["antenna_flagged_fraction"][DEAD] == 1.0
        assert s["info"]["antenna_flagged_fraction"]["DSA103"] == 0.0
        assert s["metrics"]["bandpass_amp_error"]["verdict"] == "good"
        assert s["metrics"]["bandpass_phase_error_deg"]["verdict"] == "good"
    dead = [a for a in summary["visibilities"]["antennas"] if a["name"] == DEAD][0]
    assert dead["flagged_fraction"] == 1.0
    assert summary["overall_verdict"] == "warning"
    assert any(DEAD in line or "fully flagged antennas" in line for line in summary["verdicts"])
    # every metric carries a score, and the JSON is plain JSON
    json.loads(json.dumps(summary))


def test_uncalibrated_input_with_model_scores_warning(
    calibrated_with_dead_antenna, tmp_path, client
):
    ms, _, _, _ = calibrated_with_dead_antenna
    plan = plan_rephase(ms, CAL, (10, 11, 12, 13), output_ms=tmp_path / "rephased.ms")
    rephase_and_model(plan, CAL, client)
    summary = run_qa(plan.output_ms, [], CAL).summary
    cal = summary["visibilities"]["calibrator"]["metrics"]
    assert cal["data_model_phase_scatter_deg"]["in_overall"]
    assert cal["data_model_phase_scatter_deg"]["verdict"] in ("warning", "error")
    assert cal["model_coherence"]["verdict"] == "good"
    assert summary["overall_verdict"] in ("warning", "error")
    assert any("CORRECTED_DATA missing" in s for s in summary["skipped"])


def test_stale_model_written_before_rephasing_is_caught(clean_small, tmp_path, client):
    fields = (10, 11, 12, 13)
    before = tmp_path / "before.ms"
    shutil.copytree(clean_small, before)
    dask.compute(add_model_write_graph(before, CAL))
    plan = plan_rephase(clean_small, CAL, fields, output_ms=tmp_path / "rephased.ms")
    rephase_and_model(plan, CAL, client)
    stale = tmp_path / "stale.ms"
    shutil.copytree(plan.output_ms, stale)
    with table(str(before), ack=False) as t:
        old_model = t.getcol("MODEL_DATA")[np.isin(t.getcol("FIELD_ID"), fields)]
    with table(str(stale), readonly=False, ack=False) as t:
        t.putcol("MODEL_DATA", old_model)
    summary = run_qa(stale, [], CAL).summary
    metrics = summary["visibilities"]["calibrator"]["metrics"]
    assert metrics["model_coherence"]["verdict"] == "error", metrics["model_coherence"]["line"]
    assert metrics["data_model_phase_scatter_deg"]["verdict"] == "error"
    assert summary["overall_verdict"] == "error"
    assert "MODEL_DATA vs fresh prediction" in summary["verdicts"][0]


# --- bad input -------------------------------------------------------------------------------


def test_ms_without_model_or_corrected_gives_a_partial_report(corrupted_small, tmp_path):
    # Without a calibrator nothing can stand in for MODEL_DATA: DATA figures only.
    result = run_qa(corrupted_small, [], None)
    summary = result.summary
    assert summary["columns"] == {"MODEL_DATA": False, "CORRECTED_DATA": False}
    assert not summary["model_predicted"]
    assert any("MODEL_DATA missing" in s and "skipped" in s for s in summary["skipped"])
    assert summary["calibrator_fields"] == []
    target = summary["visibilities"]["target"]["metrics"]
    assert target["flagged_fraction"]["value"] == 0.0
    paths = write_report(tmp_path / "qa", summary, result.plots)
    assert json.loads(open(paths["qa_json"]).read())["overall_score"] is not None


def test_qa_predicts_the_model_when_the_ms_has_none(corrupted_small, tmp_path):
    """As check-phasing does: the calibrator is predicted for the pass, nothing is written."""
    summary = run_qa(corrupted_small, [], CAL).summary
    assert summary["columns"]["MODEL_DATA"] is False and summary["model_predicted"]
    assert any("predicted for this QA" in s for s in summary["skipped"])
    assert summary["calibrator_fields"]
    scatter = summary["visibilities"]["calibrator"]["metrics"]["data_model_phase_scatter_deg"]
    assert scatter["value"] is not None and scatter["thermal_floor_deg"] is not None
    assert "MODEL_DATA" not in main_columns(corrupted_small)


def test_caltable_of_another_ms_and_missing_table_are_reported(
    calibrated_with_dead_antenna, make_observation
):
    _, _, tables, _ = calibrated_with_dead_antenna
    other = make_observation("tiny")
    summary = run_qa(other, [tables[0], "/nonexistent/table"], CAL).summary
    errors = [t["error"] for t in summary["caltables"]]
    assert "solved on another" in errors[0]
    assert "does not exist" in errors[1]
    assert any("another" in line for line in summary["verdicts"])


def test_fully_flagged_ms_reports_no_usable_data(make_observation, tmp_path):
    ms = tmp_path / "flagged.ms"
    shutil.copytree(make_observation("tiny"), ms)
    with table(str(ms), readonly=False, ack=False) as t:
        t.putcol("FLAG", np.ones(t.getcol("FLAG").shape, bool))
    summary = run_qa(ms, [], CAL).summary
    assert any("no usable visibilities" in s for s in summary["skipped"])
    assert summary["visibilities"]["target"]["metrics"]["flagged_fraction"]["verdict"] == "error"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dsa110_contimg", *map(str, args)],
                          capture_output=True, text=True)  # fmt: skip


def test_cli_bad_paths_exit_2_with_one_line(tmp_path):
    result = run_cli("qa", tmp_path / "missing.ms")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    (tmp_path / "notms").mkdir()
    result = run_cli("qa", tmp_path / "notms")
    assert result.returncode == 2 and "not a Measurement Set" in result.stderr


def test_cli_writes_json_and_report(calibrated_with_dead_antenna, tmp_path):
    ms, mms, tables, _ = calibrated_with_dead_antenna
    result = run_cli("qa", mms, "--caltables", *tables, "--truth", f"{ms}.truth.npz",
                     "--out", tmp_path / "qa")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "overall warning" in result.stdout
    summary = json.loads((tmp_path / "qa" / "qa.json").read_text())
    assert summary["schema"] == "dsa110_contimg.qa" and summary["version"] == 1
    assert (tmp_path / "qa" / "report.html").stat().st_size > 50_000


# --- the page in a browser -------------------------------------------------------------------


def imaging_comparison(tmp_path) -> dict:
    """An image_comparison.json-shaped result with a real side-by-side PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, title in zip(axes, ("DATA", "CORRECTED"), strict=True):
        ax.imshow(np.random.default_rng(0).normal(size=(32, 32)))
        ax.set_title(title)
    png = tmp_path / "target_field12_compare.png"
    figure.savefig(png)
    plt.close(figure)
    return {"comparisons": [{"ms": "target.cal.mms", "field": 12, "png": str(png),
                             "noise_ratio": 1.55, "dynamic_range_ratio": 2.8,
                             "coherence_before": 0.56, "coherence_after": 0.99}]}  # fmt: skip


def test_imaging_comparison_is_folded_into_the_page(calibrated_with_dead_antenna, tmp_path):
    ms, mms, tables, _ = calibrated_with_dead_antenna
    result = run_qa(mms, tables, CAL)
    page = render_report(result.summary, result.plots, imaging_comparison(tmp_path))
    section = page.split("Imaging: DATA vs CORRECTED", 1)[1]
    assert "<td>1.55</td>" in section and "<td>0.99</td>" in section
    assert 'alt="DATA vs CORRECTED images" src="data:image/png;base64,' in section


@pytest.mark.browser
def test_report_renders_in_headless_chromium(calibrated_with_dead_antenna, tmp_path):
    ms, mms, tables, _ = calibrated_with_dead_antenna
    result = run_qa(mms, tables, CAL, truth=f"{ms}.truth.npz")
    images = imaging_comparison(tmp_path)
    paths = write_report(tmp_path / "qa", result.summary, result.plots, images)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "Debian chromium and chromium-driver are needed (make test)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,2400"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"file://{paths['report_html']}")
        assert "QA" in driver.title
        images = driver.execute_script(
            "return Array.from(document.images).map("
            "i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);"
        )
        assert len(images) >= 6, images
        for alt, complete, width, height in images:
            assert complete and width > 100 and height > 100, f"image {alt!r} did not load"
        assert "DATA vs CORRECTED images" in [alt for alt, *_ in images]
        text = driver.find_element("tag name", "body").text
        assert "overall: warning" in text and DEAD in text
        assert "Imaging: DATA vs CORRECTED" in text
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert screenshot.stat().st_size > 20_000


def test_bandpass_truth_errors_of_channel_averaged_solutions():
    rng = np.random.default_rng(4)
    truth = np.exp(1j * rng.normal(0, 0.2, (3, 1, 8, 2)))
    averaged = truth.reshape(3, 1, 2, 4, 2).mean(axis=3)
    solution = averaged[:, 0] * np.exp(-1j * np.angle(averaged[0, 0]))
    flags = np.zeros(solution.shape, bool)
    errors = ck.bandpass_truth_errors(solution, flags, np.arange(3), np.zeros(3, int), 0, truth)
    assert errors["amp_error"] < 1e-9 and errors["phase_error_deg"] < 1e-6
    odd = ck.bandpass_truth_errors(solution[:, :1].repeat(3, axis=1), flags[:, :1].repeat(3, 1),
                                   np.arange(3), np.zeros(3, int), 0, truth)  # fmt: skip
    assert np.isnan(odd["amp_error"])


def test_cli_threshold_overrides_are_used_and_checked(corrupted_small, tmp_path):
    strict = tmp_path / "strict.yaml"
    strict.write_text("flagged_fraction: {good: 0.001, warning: 0.002, error: 0.005}\n")
    result = run_cli("qa", corrupted_small, "--calibrator", "0834+555", "--out", tmp_path / "q",
                     "--thresholds", strict)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "q" / "qa.json").read_text())
    assert summary["thresholds"]["flagged_fraction"]["good"] == 0.001
    target = summary["visibilities"]["calibrator"]["metrics"]["flagged_fraction"]
    assert "good limit 0.001" in target["line"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("flagged_fractions: {good: 0.2}\n")
    result = run_cli("qa", corrupted_small, "--out", tmp_path / "q2", "--thresholds", bad)
    assert result.returncode == 2 and "unknown QA threshold 'flagged_fractions'" in result.stderr
    bad.write_text("- a list\n")
    result = run_cli("qa", corrupted_small, "--out", tmp_path / "q3", "--thresholds", bad)
    assert result.returncode == 2 and "must hold a mapping" in result.stderr


def _with_corrected(ms, dest, antenna_phase_deg: float, seed: int = 3):
    """A copy of ``ms`` with its model written and CORRECTED_DATA = DATA, times
    per-antenna phase errors of ``antenna_phase_deg`` rms (0: perfectly calibrated)."""
    from casacore.tables import makecoldesc

    shutil.copytree(ms, dest)
    dask.compute(add_model_write_graph(dest, CAL, primary_beam=True))
    with table(str(dest), readonly=False, ack=False) as main:
        main.addcols(makecoldesc("CORRECTED_DATA", main.getcoldesc("DATA")))
        data, a1, a2 = main.getcol("DATA"), main.getcol("ANTENNA1"), main.getcol("ANTENNA2")
        error = np.radians(antenna_phase_deg) * np.random.default_rng(seed).standard_normal(
            a2.max() + 1
        )
        main.putcol("CORRECTED_DATA", data * np.exp(1j * (error[a1] - error[a2]))[:, None, None])
    return dest


def test_qa_judges_calibrated_data_against_its_thermal_noise(make_observation, tmp_path):
    """At DSA-110's SEFD a calibrated calibrator is noise-limited per visibility: it scores
    good; a 20-degree per-antenna phase error left in scores warning or worse; the thermal
    floor agrees with a Monte Carlo of the truth's noise level."""
    from dsa110_contimg.simulate.truth import load_truth

    ms = make_observation("small", corrupt=False, sefd_jy=6500.0, seed=8)
    clean = run_qa(_with_corrected(ms, tmp_path / "good.ms", 0.0), [], CAL).summary
    cal = clean["visibilities"]["calibrator"]["metrics"]
    phase = cal["corrected_model_phase_scatter_deg"]
    # nothing but noise is left: the floor explains the measured scatter
    assert phase["thermal_floor_deg"] > 0.9 * phase["value"] > 1.0
    assert phase["verdict"] == "good", phase["line"]
    assert cal["corrected_model_amp_ratio"]["verdict"] == "good"
    assert cal["corrected_model_amp_ratio"]["value"] == pytest.approx(1.0, abs=0.03)
    assert "thermal noise alone" in phase["line"]

    # Monte Carlo: the model plus noise at the truth's level, phase scatter against the model.
    truth = load_truth(f"{ms}.truth.npz")
    sigma = truth.meta["noise_sigma_jy"][0]
    with table(str(tmp_path / "good.ms"), ack=False) as main:
        rows = np.isin(main.getcol("FIELD_ID"), clean["calibrator_fields"])
        cross = main.getcol("ANTENNA1") != main.getcol("ANTENNA2")
        model = main.getcol("MODEL_DATA")[rows & cross]
    model = model[np.abs(model) > 0]
    rng = np.random.default_rng(0)
    noisy = model + sigma * (
        rng.standard_normal(model.shape) + 1j * rng.standard_normal(model.shape)
    )
    resultant = np.abs(np.mean(noisy * np.conj(model) / np.abs(noisy * model)))
    monte_carlo_deg = np.degrees(np.sqrt(-2 * np.log(resultant)))
    assert phase["thermal_floor_deg"] == pytest.approx(monte_carlo_deg, rel=0.10)

    off = run_qa(_with_corrected(ms, tmp_path / "off.ms", 20.0), [], CAL).summary
    off_phase = off["visibilities"]["calibrator"]["metrics"]["corrected_model_phase_scatter_deg"]
    assert off_phase["verdict"] in ("warning", "error"), off_phase["line"]
    assert off["overall_verdict"] in ("warning", "error")
