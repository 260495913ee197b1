"""A valid MS unlike the simulator's: two SPWs of different widths, four correlations.

Built with the casatools simulator (ten DSA-110 stations, SPWs of 8 and 16
channels, XX XY YX YY, 0834+555 at the phase centre predicted by CASA, numpy
noise added). Every command works on it: inspect, check-phasing, write-model
(cross-hands 0), qa, calibrate, apply, image.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest
from casacore.tables import table

from dsa110_contimg import casa_env
from dsa110_contimg.simulate.config import preset
from dsa110_contimg.simulate.plan import plan_observation
from dsa110_contimg.sky.calibrators import lookup_calibrator

pytestmark = pytest.mark.slow  # builds or calibrates whole observations

CAL = lookup_calibrator("0834+555")
SPWS = (("a", 1.40e9, 1e6, 8), ("b", 1.45e9, 0.5e6, 16))


def _contimg(*args):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", *map(str, args)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _build_odd_ms(path):
    plan = plan_observation(preset("tiny"))
    tools = casa_env.casatools()
    me = tools.measures()
    sim = tools.simulator()
    components = f"{path}.cl"
    with casa_env.casa_output_to_log():
        cl = tools.componentlist()
        cl.addcomponent(
            dir=f"J2000 {CAL.ra_deg}deg {CAL.dec_deg}deg", flux=CAL.flux_jy, fluxunit="Jy",
            freq=f"{CAL.ref_freq_hz}Hz", shape="point", spectrumtype="spectral index",
            index=CAL.spectral_index,
        )  # fmt: skip
        cl.rename(components)
        cl.close()
        sim.open(str(path))
        xyz = plan.antenna_itrf_m
        sim.setconfig(
            telescopename="OVRO_MMA", x=xyz[:, 0].tolist(), y=xyz[:, 1].tolist(),
            z=xyz[:, 2].tolist(), dishdiameter=[4.65] * len(xyz), mount=["alt-az"] * len(xyz),
            antname=list(plan.antenna_names), padname=list(plan.antenna_names),
            coordsystem="global", referencelocation=me.observatory("OVRO_MMA"),
        )  # fmt: skip
        for name, freq, width, n_chan in SPWS:
            sim.setspwindow(
                spwname=name, freq=f"{freq}Hz", deltafreq=f"{width}Hz",
                freqresolution=f"{width}Hz", nchannels=n_chan, stokes="XX XY YX YY",
            )  # fmt: skip
        sim.setfeed(mode="perfect X Y", pol=[""])
        sim.setauto(autocorrwt=0.0)
        sim.setlimits(shadowlimit=0.0, elevationlimit="0deg")
        sim.setfield(
            sourcename="cal",
            sourcedirection=me.direction("J2000", f"{CAL.ra_deg}deg", f"{CAL.dec_deg}deg"),
        )
        sim.settimes(
            integrationtime="10s", usehourangle=True,
            referencetime=me.epoch("UTC", "2025/01/15/00:00:00"),
        )  # fmt: skip
        for name, *_ in SPWS:
            sim.observe(sourcename="cal", spwname=name, starttime="-60s", stoptime="60s")
        sim.predict(complist=components, incremental=False)
        sim.close()
    sim.done()
    rng = np.random.default_rng(1)
    with table(str(path), readonly=False, ack=False) as main:
        main.removecols(["MODEL_DATA", "CORRECTED_DATA"])
        for ddid in range(len(SPWS)):
            with main.query(f"DATA_DESC_ID == {ddid}") as rows:
                data = rows.getcol("DATA")
                noise = rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape)
                rows.putcol("DATA", (data + 0.5 * noise).astype(np.complex64))


def _data_by_ddid(ms):
    columns = []
    with table(str(ms), ack=False) as main:
        for ddid in range(len(SPWS)):
            with main.query(f"DATA_DESC_ID == {ddid}") as rows:
                columns.append(rows.getcol("DATA"))
    return columns


@pytest.fixture(scope="module")
def odd_ms(tmp_path_factory):
    """Built in its own process, as CASA runs in this project: the test process
    reads tables with python-casacore, another copy of casacore."""
    path = tmp_path_factory.mktemp("odd") / "odd.ms"
    builder = multiprocessing.get_context("spawn").Process(target=_build_odd_ms, args=(path,))
    builder.start()
    builder.join()
    assert builder.exitcode == 0
    assert all(np.isfinite(data).all() for data in _data_by_ddid(path))
    return path


def test_inspect_check_and_model_on_spws_of_different_widths(odd_ms):
    result = _contimg("inspect", odd_ms, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["n_chan"] for s in summary["spws"]] == [8, 16]
    assert summary["corr_names"] == ["XX", "XY", "YX", "YY"]

    result = _contimg("check-phasing", odd_ms, "--calibrator", "0834+555", "--json")
    assert result.returncode == 0, result.stderr
    (field,) = json.loads(result.stdout)["fields"]
    assert field["verdict"] == "excellent" and field["data_model_phase_scatter_deg"] < 10

    before = _data_by_ddid(odd_ms)
    result = _contimg("write-model", odd_ms, "--calibrator", "0834+555", "--no-beam")
    assert result.returncode == 0, result.stderr
    for data, data_before in zip(_data_by_ddid(odd_ms), before, strict=True):
        np.testing.assert_array_equal(data, data_before)  # DATA untouched
    with table(str(odd_ms), ack=False) as main:
        for ddid, (*_, n_chan) in enumerate(SPWS):
            with main.query(f"DATA_DESC_ID == {ddid}") as rows:
                model, data = rows.getcol("MODEL_DATA"), rows.getcol("DATA")
            assert model.shape[1:] == (n_chan, 4)
            assert np.all(model[:, :, 1:3] == 0)  # XY, YX
            np.testing.assert_allclose(model[:, :, 0], model[:, :, 3])
            # CASA's own prediction (DATA, before noise) against ours, to the noise
            assert np.median(np.abs(data[:, :, 0] - model[:, :, 0])) < 1.5


def test_calibrate_apply_qa_and_image_on_spws_of_different_widths(odd_ms, tmp_path):
    result = _contimg("calibrate", odd_ms, "--calibrator", "0834+555", "--refant", "DSA103",
                      "--out", tmp_path / "cal", "--n-workers", "2", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok"
    (obs,) = summary["observations"]
    assert obs["calibrated_spws"] == [0, 1]
    tables = [obs["merged_tables"]["bpcal"], obs["merged_tables"]["2gcal"]]

    result = _contimg("qa", obs["output_mms"], "--caltables", *tables, "--calibrator",
                      "0834+555", "--out", tmp_path / "qa", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    qa = json.loads(result.stdout)
    bandpass = qa["caltables"][0]
    assert "error" not in bandpass and [s["spw"] for s in bandpass["spws"]] == [0, 1]
    metrics = qa["visibilities"]["calibrator"]["metrics"]
    assert metrics["corrected_model_phase_scatter_deg"]["verdict"] == "good"
    assert metrics["corrected_model_amp_ratio"]["value"] == pytest.approx(1.0, abs=0.05)

    result = _contimg("apply", odd_ms, "--tables", *tables, "--out", tmp_path / "applied")
    assert result.returncode == 0, result.stderr

    # no truth file here: the calibrator is measured with the flux the user gives
    result = _contimg("image", obs["output_mms"], "--out", tmp_path / "img", "--json",
                      "--calibrator", "0834+555", "--cal-flux", "9.0", "--cal-ref-freq",
                      "1.4e9", "--cal-index", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    imaging = json.loads(result.stdout)
    (comparison,) = imaging["comparisons"]
    assert comparison["coherence_after"] > 0.95
    corrected = [i for i in imaging["images"] if i["column"] == "corrected"][0]
    (source,) = [s for s in corrected["sources"] if s["name"] == "0834+555"]
    assert source["expected_apparent_jy"] == pytest.approx(9.0, rel=0.01)
    assert abs(source["flux_error"]) < 0.06  # 8.8 Jy at 1.4 GHz, index -0.38, truly
