"""Phase-centre check, field selection, rephasing and the per-field model."""

import json
import os
import shutil
import subprocess
import sys

import dask
import numpy as np
import pytest
from casacore.tables import table

from conftest import one_error_line
from dsa110_contimg.phasing.check import check_phasing
from dsa110_contimg.phasing.geometry import field_geometry, select_auto_fields
from dsa110_contimg.phasing.model import add_model_write_graph
from dsa110_contimg.phasing.rephase import plan_rephase, rephase_and_model
from dsa110_contimg.simulate import load_truth, preset, simulate_observation
from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, transit_centred_start
from dsa110_contimg.sky.calibrators import lookup_calibrator

CAL = lookup_calibrator("0834+555")
CAL_FIELDS = (9, 10, 11, 12, 13)


def _contimg(*args):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", *args], capture_output=True, text=True, timeout=600
    )


def _column(ms, name):
    with table(str(ms), ack=False) as t:
        return t.getcol(name)


@pytest.fixture(scope="module")
def notes_geometry_ms(tmp_path_factory):
    """Five integrations whose middle field is phased to RA 128.571864, Dec 54.665223."""
    config = preset("tiny", n_times=5)
    start = transit_centred_start(128.571864, 5 * config.integration_s)
    out = tmp_path_factory.mktemp("notes") / "notes.ms"
    simulate_observation(out, config.replace(start_time=mjd_seconds_to_iso(start)))
    return out


def test_notes_case_54_7_arcmin_and_not_phased(notes_geometry_ms):
    result = _contimg(
        "check-phasing", "--ms", str(notes_geometry_ms), "--cal-ra", "128.7287",
        "--cal-dec", "55.5725", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    middle = report["fields"][2]
    assert middle["phase_dir_deg"][0] == pytest.approx(128.571864, abs=2e-3)
    assert middle["phase_dir_deg"][1] == pytest.approx(54.665223, abs=1e-6)
    assert middle["separation_arcmin"] == pytest.approx(54.7, abs=0.1)
    assert report["phased_to_calibrator"] is False
    assert middle["verdict"] == "not phased"
    for key in ("field_id", "name", "pb_response", "verdict", "spws"):
        assert key in middle
    spw = middle["spws"][0]
    for key in ("model_phase_scatter_deg", "data_model_phase_scatter_deg", "median_amp_ratio",
                "flagged_fraction"):  # fmt: skip
        assert key in spw
    text = _contimg("check-phasing", str(notes_geometry_ms), "--calibrator", "0834+555")
    assert "NOT phased to 0834+555" in text.stdout


def test_auto_fields_window_and_threshold(corrupted_small):
    geometry = field_geometry(corrupted_small, CAL)
    response = np.array([g.pb_response for g in geometry])
    window = select_auto_fields(geometry, window=5)
    assert len(window) == 5 and int(np.argmax(response)) in window
    assert window == list(range(window[0], window[0] + 5))
    above = select_auto_fields(geometry, min_response=0.76)
    assert above and all(response[i] >= 0.76 for i in above)
    assert select_auto_fields(geometry, min_response=0.99) == []


def _divide_out_truth_gains(src, dst):
    """Copy of ``src`` whose DATA has the true per-antenna gains divided out."""
    shutil.copytree(src, dst)
    truth = load_truth(src)
    gains = np.stack([truth.gains(s) for s in range(truth.bandpass.shape[1])])
    with table(str(dst), readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        field, ddid = t.getcol("FIELD_ID"), t.getcol("DATA_DESC_ID")
        g = gains[ddid, a1, field] * np.conj(gains[ddid, a2, field])
        t.putcol("DATA", (t.getcol("DATA") / g).astype(np.complex64))
    return dst


@pytest.fixture(scope="module")
def rephased(make_observation, tmp_path_factory, client):
    """Rephase + model on three inputs: corrected-corrupted, noiseless-clean, raw corrupted."""
    work = tmp_path_factory.mktemp("rephase")
    inputs = {
        "gains_divided": _divide_out_truth_gains(
            make_observation("small", seed=21), work / "gd.ms"
        ),
        "clean": make_observation("small", noise=False, corrupt=False, seed=21),
    }
    data_before = {k: _column(v, "DATA") for k, v in inputs.items()}
    before = {k: check_phasing(v, CAL) for k, v in inputs.items()}
    after = {}
    for key, ms in inputs.items():
        plan = plan_rephase(ms, CAL, CAL_FIELDS, output_ms=work / f"{key}_rephased.ms")
        after[key] = (plan, rephase_and_model(plan, CAL, client))
    return inputs, before, after, data_before


def test_before_rephasing_the_check_says_not_phased(rephased):
    _, before, _, _ = rephased
    for report in before.values():
        assert not report.phased_to_calibrator
        assert all(f.geometry.separation_arcmin > 50 for f in report.fields)
        assert all(f.verdict in ("not phased", "misaligned") for f in report.fields)


def test_after_rephasing_and_model_the_calibrator_is_aligned(rephased):
    inputs, _, after, data_before = rephased
    for key, (_plan, report) in after.items():
        assert report.phased_to_calibrator
        assert [f.geometry.field_id for f in report.fields] == list(CAL_FIELDS)
        for f in report.fields:
            assert f.geometry.separation_arcmin < 0.1
            assert 0.5 < f.median_amp_ratio < 2
            assert not f.stale_model
            limit = 5 if key == "clean" else 30
            assert f.data_model_phase_scatter_deg < limit, (key, f)
            assert f.verdict == "excellent"
        # The input MS is never changed.
        assert np.array_equal(_column(inputs[key], "DATA"), data_before[key])
        with table(f"{inputs[key]}/FIELD", ack=False) as fld:
            assert np.degrees(fld.getcol("PHASE_DIR")[10, 0, 1]) == pytest.approx(54.665223)


def test_reference_dir_trap(rephased, tmp_path):
    """PHASE_DIR is what rephasing changes; a REFERENCE_DIR reader gets both cases wrong."""
    _, _, after, _ = rephased
    plan, report = after["clean"]
    with table(f"{plan.output_ms}/FIELD", ack=False) as fld:
        reference = np.degrees(fld.getcol("REFERENCE_DIR")[list(CAL_FIELDS), 0])
    # Rephased MS: REFERENCE_DIR still points ~54 arcmin away, PHASE_DIR is on the calibrator.
    assert np.all(np.abs(reference[:, 1] - CAL.dec_deg) > 0.85)
    assert report.phased_to_calibrator
    # Unrephased MS whose REFERENCE_DIR names the calibrator: a REFERENCE_DIR check would
    # print "already phased (0.00 arcmin)"; ours reads PHASE_DIR and says not phased.
    trap = tmp_path / "trap.ms"
    shutil.copytree(plan.ms, trap)
    with table(f"{trap}/FIELD", readonly=False, ack=False) as fld:
        ref = fld.getcol("REFERENCE_DIR")
        ref[:, 0, :] = np.radians([CAL.ra_deg, CAL.dec_deg])
        fld.putcol("REFERENCE_DIR", ref)
    trapped = check_phasing(trap, CAL, visibilities=False)
    assert all(f.geometry.pointing_offset_arcmin < 0.01 for f in trapped.fields)
    assert not trapped.phased_to_calibrator
    assert min(f.geometry.separation_arcmin for f in trapped.fields) > 50


def test_already_phased_ms_is_not_shifted_again(rephased):
    _, _, after, _ = rephased
    plan, _ = after["clean"]
    again = plan_rephase(plan.output_ms, CAL, CAL_FIELDS)
    assert again.already_phased and again.output_ms == plan.output_ms


CASA_REFERENCES = """
from dsa110_contimg import casa_env
tools, tasks = casa_env.casatools(), casa_env.casatasks()
with casa_env.casa_output_to_log():
    cl = tools.componentlist()
    cl.addcomponent(
        dir="J2000 {cal.ra_deg}deg {cal.dec_deg}deg", flux={cal.flux_jy}, fluxunit="Jy",
        freq="{cal.ref_freq_hz}Hz", shape="point", spectrumtype="spectral index",
        index={cal.spectral_index},
    )
    cl.rename({complist!r})
    cl.close()
    sim = tools.simulator()
    sim.openfromms({predict!r})
    sim.predict(complist={complist!r}, incremental=False)
    sim.close()
    tasks.ft(vis={ft!r}, complist={complist!r}, usescratch=True)
"""


def _casa_references(source, directory, attempts=3):
    """simulator.predict's DATA and ft's MODEL_DATA for CAL, each in a fresh CASA process.

    CASA keeps process-wide state (after other CASA tasks in one process `ft` has left rows
    of NaN) and now and then writes rows of NaN even in a fresh process: a reference with
    any NaN is made again from a fresh copy, and must come out finite within `attempts`.
    """
    for attempt in range(attempts):
        work = directory / f"attempt{attempt}"
        predict, ft = work / "sm.ms", work / "ft.ms"
        for path in (predict, ft):
            shutil.copytree(source, path)
        script = CASA_REFERENCES.format(
            complist=str(work / "cal.cl"), predict=str(predict), ft=str(ft), cal=CAL
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        references = _column(predict, "DATA"), _column(ft, "MODEL_DATA")
        if all(np.isfinite(r).all() for r in references):
            return references
    raise AssertionError(f"CASA wrote NaN into its reference in each of {attempts} attempts")


def test_model_matches_casa_predict_on_every_field(make_observation, tmp_path):
    """Our per-field model vs casatools simulator.predict and CASA ft (component list)."""
    source = make_observation("small", noise=False, corrupt=False, seed=4)
    ours = tmp_path / "ours.ms"
    shutil.copytree(source, ours)
    dask.compute(add_model_write_graph(ours, CAL, primary_beam=False))
    reference, ft_model = _casa_references(source, tmp_path)
    model = _column(ours, "MODEL_DATA")
    field, a1, a2 = (_column(source, c) for c in ("FIELD_ID", "ANTENNA1", "ANTENNA2"))
    for f in np.unique(field):
        rows = (field == f) & (a1 != a2)
        scale = np.abs(reference[rows]).max()
        assert np.abs(model[rows] - reference[rows]).max() / scale < 1e-3
        assert np.abs(model[rows] - ft_model[rows]).max() / scale < 1e-3


def test_one_phase_centre_model_is_caught(rephased, tmp_path):
    """A model predicted for one phase centre on every field (the original failure)."""
    _, _, after, _ = rephased
    plan, _ = after["clean"]
    broken = tmp_path / "one_centre.ms"
    shutil.copytree(plan.ms, broken)
    dask.compute(add_model_write_graph(broken, CAL))
    with table(str(broken), readonly=False, ack=False) as t:
        field = t.getcol("FIELD_ID")
        model = t.getcol("MODEL_DATA")
        ddid = t.getcol("DATA_DESC_ID")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        first = field == 0
        lookup = {
            (d, i, j): r
            for r, (d, i, j) in enumerate(zip(ddid[first], a1[first], a2[first], strict=False))
        }
        rows_of_first = np.flatnonzero(first)
        index = [rows_of_first[lookup[(d, i, j)]] for d, i, j in zip(ddid, a1, a2, strict=False)]
        t.putcol("MODEL_DATA", model[index])
    report = check_phasing(broken, CAL)
    far = [f for f in report.fields if abs(f.geometry.field_id - 0) > 3]
    assert all(f.stale_model for f in far)
    assert np.median([f.data_model_phase_scatter_deg for f in far]) > 90


def test_stale_model_written_before_rephasing_is_caught(rephased, tmp_path):
    _, _, after, _ = rephased
    plan, _ = after["clean"]
    before = tmp_path / "before.ms"
    shutil.copytree(plan.ms, before)
    dask.compute(add_model_write_graph(before, CAL))
    stale = tmp_path / "stale.ms"
    shutil.copytree(plan.output_ms, stale)
    with table(str(before), ack=False) as t:
        keep = np.isin(t.getcol("FIELD_ID"), CAL_FIELDS)
        old_model = t.getcol("MODEL_DATA")[keep]
    with table(str(stale), readonly=False, ack=False) as t:
        t.putcol("MODEL_DATA", old_model)
    report = check_phasing(stale, CAL, fields=list(CAL_FIELDS))
    assert all(f.stale_model for f in report.fields)
    assert all(f.verdict == "stale model" for f in report.fields)
    assert np.median([f.data_model_phase_scatter_deg for f in report.fields]) > 90
    assert all("stale model" in f.detail for f in report.fields)


def test_model_rewrite_is_idempotent(rephased):
    _, _, after, _ = rephased
    plan, _ = after["clean"]
    first = _column(plan.output_ms, "MODEL_DATA")
    dask.compute(add_model_write_graph(plan.output_ms, CAL))
    assert np.array_equal(first, _column(plan.output_ms, "MODEL_DATA"))


def test_dask_metrics_equal_numpy(rephased):
    """check_phasing's per-(field, SPW) metrics vs a direct numpy computation."""
    _, _, after, _ = rephased
    plan, report = after["gains_divided"]
    cols = {c: _column(plan.output_ms, c) for c in
            ("DATA", "MODEL_DATA", "FLAG", "WEIGHT", "FIELD_ID", "DATA_DESC_ID", "ANTENNA1",
             "ANTENNA2")}  # fmt: skip
    for f in report.fields:
        for s in f.spws:
            rows = (cols["FIELD_ID"] == f.geometry.field_id) & (cols["DATA_DESC_ID"] == s.spw)
            rows &= cols["ANTENNA1"] != cols["ANTENNA2"]
            d, m = cols["DATA"][rows], cols["MODEL_DATA"][rows]
            ok = ~cols["FLAG"][rows]
            w = np.broadcast_to(cols["WEIGHT"][rows][:, None, :], d.shape)[ok]
            diff = np.angle(d[ok] * np.conj(m[ok]))
            r = np.abs(np.sum(w * np.exp(1j * diff))) / w.sum()
            assert s.data_model_phase_scatter_deg == pytest.approx(
                np.degrees(np.sqrt(-2 * np.log(r))), rel=1e-4
            )
            r_model = np.abs(np.sum(w * np.exp(1j * np.angle(m[ok])))) / w.sum()
            assert s.model_phase_scatter_deg == pytest.approx(
                np.degrees(np.sqrt(-2 * np.log(min(r_model, 1.0)))), abs=0.05
            )
            ratio = np.median(np.abs(d[ok]) / np.abs(m[ok]))
            assert s.median_amp_ratio == pytest.approx(ratio, rel=0.012)
            assert s.flagged_fraction == pytest.approx(1 - ok.mean())


def test_bad_inputs_exit_2_and_change_nothing(corrupted_small, tmp_path):
    ms = str(corrupted_small)
    data_before = _column(ms, "DATA")
    cases = [
        ["check-phasing", ms, "--calibrator", "NOPE"],
        ["check-phasing", ms, "--calibrator", "3C286"],  # outside every beam
        ["check-phasing", str(tmp_path / "missing.ms"), "--calibrator", "0834+555"],
        ["check-phasing", str(tmp_path), "--calibrator", "0834+555"],
        ["check-phasing", ms],
        ["check-phasing", ms, "--calibrator", "0834+555", "--field", "99"],
        ["rephase", ms, "--calibrator", "0834+555"],  # no fields chosen
        ["rephase", ms, "--calibrator", "0834+555", "--auto-fields", "--min-pb-response", "0.99"],
    ]
    for args in cases:
        result = _contimg(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() == one_error_line(result)
    assert np.array_equal(_column(ms, "DATA"), data_before)
    assert "MODEL_DATA" not in table(ms, ack=False).colnames()


def test_fully_flagged_data_is_refused(corrupted_small, tmp_path):
    flagged = tmp_path / "flagged.ms"
    shutil.copytree(corrupted_small, flagged)
    with table(str(flagged), readonly=False, ack=False) as t:
        t.putcol("FLAG", np.ones_like(t.getcol("FLAG")))
    result = _contimg("check-phasing", str(flagged), "--calibrator", "0834+555")
    assert result.returncode == 2
    assert "no usable visibilities" in result.stderr


def test_write_model_creates_missing_column(corrupted_small, tmp_path):
    ms = tmp_path / "nomodel.ms"
    shutil.copytree(corrupted_small, ms)
    result = _contimg("write-model", str(ms), "--calibrator", "0834+555")
    assert result.returncode == 0, result.stderr
    model = _column(ms, "MODEL_DATA")
    assert np.all(np.isfinite(model)) and np.abs(model).max() > 1


def test_native_shift_equals_casa_phaseshift(corrupted_small, tmp_path):
    """The copy rephased on the way writes what CASA phaseshift writes, field by field."""
    from dsa110_contimg.casa.tasks import run_phaseshift
    from dsa110_contimg.ms.reads import fixed_j2000_phase_centres
    from dsa110_contimg.phasing.shift import copy_rephased

    data_before = _column(corrupted_small, "DATA")
    assert fixed_j2000_phase_centres(corrupted_small)
    centre = f"J2000 {CAL.ra_deg}deg {CAL.dec_deg}deg"
    casa, native = tmp_path / "casa.ms", tmp_path / "native.ms"
    log_file = str(tmp_path / "casa.log")
    run_phaseshift(corrupted_small, str(casa), {f: centre for f in CAL_FIELDS}, spw="1",
                   log_file=log_file)  # fmt: skip
    copy_rephased(corrupted_small, str(native), CAL_FIELDS, CAL.ra_rad, CAL.dec_rad,
                  spw="1", field="")  # fmt: skip
    assert np.array_equal(_column(corrupted_small, "DATA"), data_before)
    assert not list(tmp_path.glob(".*"))  # nothing half-written left beside the product

    field_id = _column(native, "FIELD_ID")
    shifted = np.isin(field_id, CAL_FIELDS)
    assert shifted.any() and (~shifted).any()
    uvw_casa, uvw_native = _column(casa, "UVW"), _column(native, "UVW")
    assert np.abs(uvw_native - uvw_casa).max() < 1e-6
    data_casa, data_native = _column(casa, "DATA"), _column(native, "DATA")
    with table(str(corrupted_small), ack=False) as main, main.query("DATA_DESC_ID==1") as spw1:
        uvw_in, data_in, weight_in = spw1.getcol("UVW"), spw1.getcol("DATA"), spw1.getcol("WEIGHT")
    assert np.array_equal(uvw_native[~shifted], uvw_in[~shifted])
    assert np.array_equal(data_native[~shifted], data_in[~shifted])
    assert np.abs(uvw_native[shifted] - uvw_in[shifted]).max() > 1.0
    scale = np.maximum(np.abs(data_casa), 1e-3)
    assert (np.abs(data_native - data_casa) / scale).max() < 1e-5
    with table(str(casa), ack=False) as a, table(str(native), ack=False) as b:
        assert sorted(a.colnames()) == sorted(b.colnames())
        for column in set(a.colnames()) - {"UVW", "DATA", "FLAG_CATEGORY", "WEIGHT"}:
            assert np.array_equal(a.getcol(column), b.getcol(column)), column
        # CASA rewrites WEIGHT from SIGMA (one float32 step away); the copy keeps it
        assert np.array_equal(b.getcol("WEIGHT"), weight_in)
        np.testing.assert_allclose(b.getcol("WEIGHT"), a.getcol("WEIGHT"), rtol=1e-6)
        for name in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "DATA_DESCRIPTION", "POLARIZATION"):
            with table(f"{a.name()}/{name}", ack=False) as sa, table(f"{b.name()}/{name}",
                                                                     ack=False) as sb:  # fmt: skip
                assert sa.nrows() == sb.nrows() > 0, name
    for column in ("PHASE_DIR", "REFERENCE_DIR", "DELAY_DIR"):
        casa_dir, native_dir = _column(casa / "FIELD", column), _column(native / "FIELD", column)
        assert np.abs(native_dir - casa_dir).max() < 1e-12, column


def test_native_shift_is_only_for_fixed_j2000_directions(corrupted_small, tmp_path):
    from dsa110_contimg.ms.reads import fixed_j2000_phase_centres

    copy = tmp_path / "b1950.ms"
    shutil.copytree(corrupted_small, copy)
    with table(str(copy / "FIELD"), readonly=False, ack=False) as field:
        keywords = field.getcolkeywords("PHASE_DIR")
        keywords["MEASINFO"]["Ref"] = "B1950"
        field.putcolkeywords("PHASE_DIR", keywords)
    assert not fixed_j2000_phase_centres(copy)


def test_rephased_copy_takes_only_the_selection_and_leaves_the_input(corrupted_small, tmp_path):
    """A field selection and one shifted field, from an input with model columns:
    only those rows are copied, without MODEL_DATA or CORRECTED_DATA; the rows of
    the other field bit for bit; the input as it was."""
    from dsa110_contimg.casa.tasks import run_clearcal
    from dsa110_contimg.phasing.model import add_model_write_graph
    from dsa110_contimg.phasing.shift import copy_rephased

    source = tmp_path / "with_models.ms"
    shutil.copytree(corrupted_small, source)
    run_clearcal(str(source), str(tmp_path / "casa.log"))  # CORRECTED_DATA
    dask.compute(add_model_write_graph(str(source), CAL), scheduler="synchronous")
    with table(str(source), readonly=False, ack=False) as main:  # as old CASA MSs have
        main.putkeyword("SORTED_TABLE", main.sort("TIME", name=str(source / "SORTED_TABLE")))
    before = {c: _column(source, c) for c in ("DATA", "UVW", "MODEL_DATA")}
    copy = tmp_path / "copy.ms"
    detail = copy_rephased(source, str(copy), [10], CAL.ra_rad, CAL.dec_rad, spw="2",
                           field="9,10")  # fmt: skip

    for column, values in before.items():
        assert np.array_equal(_column(source, column), values), column
    with table(str(source), ack=False) as main:
        with main.query("DATA_DESC_ID==2 AND FIELD_ID IN [9,10]") as chosen:
            field_in, data_in = chosen.getcol("FIELD_ID"), chosen.getcol("DATA")
    with table(str(copy), ack=False) as out:
        assert not {"MODEL_DATA", "CORRECTED_DATA"} & set(out.colnames())
        assert "SORTED_TABLE" not in out.getkeywords() and not (copy / "SORTED_TABLE").exists()
        assert out.getkeyword("ANTENNA").endswith("copy.ms/ANTENNA")
        assert out.nrows() == len(field_in) == detail["rows"] > 0
        field_out, data_out = out.getcol("FIELD_ID"), out.getcol("DATA")
        assert set(out.getcol("DATA_DESC_ID")) == {2}
    assert np.array_equal(field_out, field_in)
    kept = field_out == 9
    assert np.array_equal(data_out[kept], data_in[kept])
    assert not np.allclose(data_out[~kept], data_in[~kept])
    phase_dir = _column(copy / "FIELD", "PHASE_DIR")[:, 0, :]
    assert np.allclose(phase_dir[10], (CAL.ra_rad, CAL.dec_rad))
    assert np.array_equal(phase_dir[9], _column(source / "FIELD", "PHASE_DIR")[9, 0, :])


def test_model_written_in_the_check_pass_equals_write_then_check(corrupted_small, tmp_path):
    """check_phasing(write_model=True) writes the MODEL_DATA a pass of its own writes and
    reports what a check reading it back reports; DATA is not touched."""
    apart, together = tmp_path / "apart.ms", tmp_path / "together.ms"
    shutil.copytree(corrupted_small, apart)
    shutil.copytree(corrupted_small, together)
    dask.compute(add_model_write_graph(str(apart), CAL), scheduler="synchronous")
    expected = check_phasing(apart, CAL, fields=list(CAL_FIELDS))
    report = check_phasing(together, CAL, fields=list(CAL_FIELDS), write_model=True)

    np.testing.assert_array_equal(_column(together, "MODEL_DATA"), _column(apart, "MODEL_DATA"))
    np.testing.assert_array_equal(_column(together, "DATA"), _column(corrupted_small, "DATA"))
    assert report.model_source == expected.model_source == "MODEL_DATA"
    fields = [json.dumps(r.to_json_dict()["fields"], sort_keys=True) for r in (report, expected)]
    assert fields[0] == fields[1]
    assert [f.verdict for f in report.fields] == [f.verdict for f in expected.fields]


@pytest.mark.parametrize("at_phase_centre", [False, True])
def test_prepare_in_one_pass_equals_copy_flag_then_model(corrupted_small, tmp_path,
                                                         at_phase_centre):  # fmt: skip
    """The native prepare's one pass (rephase, flag autocorrelations and zeros, MODEL_DATA,
    the check's sums) writes what the copy, the native flag and the model step write one
    after another, and its sums give their report; the input is only read."""
    from dsa110_contimg.calibration.native_flag import flag_autocorrelations_and_zeros
    from dsa110_contimg.calibration.native_prepare import ModelInCopy, prepare_spw
    from dsa110_contimg.phasing.check import phasing_report
    from dsa110_contimg.phasing.shift import copy_rephased

    source = tmp_path / "with_zeros.ms"
    shutil.copytree(corrupted_small, source)
    with table(str(source), readonly=False, ack=False) as main:
        data = main.getcol("DATA")
        data[::7, 3, 0] = 0  # zeros and a NaN for the flag to find
        data[5, :, 1] = np.nan
        main.putcol("DATA", data)
    before = _column(source, "DATA")
    modes = ["autocorr", "zeros"]
    apart, together = tmp_path / "apart.ms", tmp_path / "together.ms"
    copy_rephased(source, str(apart), CAL_FIELDS, CAL.ra_rad, CAL.dec_rad, spw="1", field="")
    flag_autocorrelations_and_zeros(str(apart), modes)
    expected = check_phasing(apart, CAL, fields=list(CAL_FIELDS), write_model=True,
                             at_phase_centre=at_phase_centre)  # fmt: skip
    model = ModelInCopy(CAL, CAL_FIELDS, at_phase_centre=at_phase_centre)
    detail = prepare_spw(source, str(together), CAL_FIELDS, CAL.ra_rad, CAL.dec_rad, spw=1,
                         field="", flag_modes=modes, model=model)  # fmt: skip

    np.testing.assert_array_equal(_column(source, "DATA"), before)
    assert not list(tmp_path.glob(".*"))
    flag = _column(together, "FLAG")
    assert flag.any() and not flag.all()
    for column in ("DATA", "UVW", "FLAG", "FLAG_ROW", "MODEL_DATA", "WEIGHT"):
        np.testing.assert_array_equal(_column(together, column), _column(apart, column), column)
    np.testing.assert_array_equal(
        _column(together / "FIELD", "PHASE_DIR"), _column(apart / "FIELD", "PHASE_DIR")
    )
    assert detail["flagged"] == modes
    report = phasing_report(str(together), CAL, CAL_FIELDS, detail["phasing_sums"], "MODEL_DATA")
    assert report.phased_to_calibrator and report.summary == expected.summary
    got, want = report.to_json_dict()["fields"], expected.to_json_dict()["fields"]
    assert [f["verdict"] for f in got] == [f["verdict"] for f in want]
    for mine, theirs in zip(got, want, strict=True):
        for key in ("data_model_phase_scatter_deg", "median_amp_ratio", "flagged_fraction",
                    "model_coherence", "data_model_phase_floor_deg"):  # fmt: skip
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-9, err_msg=key)


def test_check_partials_of_chunks_add_up_and_a_chunk_without_wanted_fields_adds_nothing(
    corrupted_small,
):
    """The check's per-chunk sums: a chunk holding none of the wanted fields gives zeros
    (the copy's blocks can fall between the calibrator's fields), and two halves of a
    chunk add up to the whole."""
    from dsa110_contimg.phasing.check import spw_chunk_partials
    from dsa110_contimg.phasing.view import calibrator_view, predicted_model

    view = calibrator_view(corrupted_small, CAL, True)
    with table(str(corrupted_small), ack=False) as main, main.query("DATA_DESC_ID==1") as spw1:
        cols = {c: spw1.getcol(c) for c in ("DATA", "FLAG", "WEIGHT", "ANTENNA1", "ANTENNA2",
                                            "FIELD_ID", "UVW")}  # fmt: skip
    model = predicted_model(cols["UVW"], cols["FIELD_ID"], 1, view)
    wanted = np.zeros(view.n_field, bool)
    wanted[list(CAL_FIELDS)] = True

    def partials(rows, wanted_fields):
        return spw_chunk_partials(
            cols["DATA"][rows], model[rows], cols["FLAG"][rows], cols["WEIGHT"][rows],
            cols["ANTENNA1"][rows], cols["ANTENNA2"][rows], cols["FIELD_ID"][rows],
            cols["UVW"][rows], 1, view, wanted_fields, False,
        )  # fmt: skip

    elsewhere = np.flatnonzero(~wanted[cols["FIELD_ID"]])
    none_wanted, coherence = partials(elsewhere, wanted)
    assert len(elsewhere) and not none_wanted.any() and not coherence.any()
    whole, _ = partials(slice(None), wanted)
    half = len(cols["FIELD_ID"]) // 2
    first, _ = partials(slice(0, half), wanted)
    second, _ = partials(slice(half, None), wanted)
    assert whole[list(CAL_FIELDS)].any()
    np.testing.assert_allclose(first + second, whole, rtol=1e-9)
