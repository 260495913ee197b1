"""Real observations of other telescopes (``../shared/realdata``), read and modelled.

Every Measurement Set there is read by ``inspect`` (the ALMA one has two
POLARIZATION rows of different shapes, which whole-column reads refuse).
MODEL_DATA on ATA (XX XY YX YY) and OVRO-LWA (XX YY XY YX order): a 1 Jy
source at each field's phase centre, without a beam, must give exactly 1 in
the parallel hands and 0 in the cross-hands, whatever their order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import dask
import numpy as np
import pytest
from casacore.tables import table

from conftest import REPO_ROOT, assert_solutions_agree, one_error_line
from dsa110_contimg.ms.reads import corr_types_of_ddid
from dsa110_contimg.phasing.model import add_model_write_graph, stokes_i_weights
from dsa110_contimg.sky.calibrators import Calibrator

pytestmark = pytest.mark.slow  # builds or calibrates whole observations

REALDATA = REPO_ROOT.parent / "shared" / "realdata"
PARALLEL = {"XX", "YY", "RR", "LL"}
STOKES_NAMES = {5: "RR", 6: "RL", 7: "LR", 8: "LL", 9: "XX", 10: "XY", 11: "YX", 12: "YY"}


def _unpack(name: str, tmp_path: Path) -> Path:
    archive = REALDATA / name
    if not archive.exists():
        pytest.skip(f"{archive} is not on this machine")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    (ms,) = [p for p in tmp_path.iterdir() if p.suffix == ".ms"]
    return ms


def test_stokes_i_weights_follow_corr_type():
    assert list(stokes_i_weights([9, 10, 11, 12])) == [1, 0, 0, 1]
    assert list(stokes_i_weights([9, 12, 10, 11])) == [1, 1, 0, 0]
    assert list(stokes_i_weights([5, 6, 7, 8])) == [1, 0, 0, 1]
    assert list(stokes_i_weights([10])) == [0]
    assert list(stokes_i_weights([1])) == [1]


@pytest.mark.parametrize(
    ("archive", "order"),
    [("ata_3c286.ms.tgz", ["XX", "XY", "YX", "YY"]),
     ("ovro_lwa_2018-03-21.ms.tgz", ["XX", "YY", "XY", "YX"])],
)  # fmt: skip
def test_model_cross_hands_are_zero_in_any_order(tmp_path, archive, order):
    ms = _unpack(archive, tmp_path)
    (corr_types,) = {tuple(c) for c in corr_types_of_ddid(ms)}
    assert [STOKES_NAMES[c] for c in corr_types] == order
    with table(str(ms / "FIELD"), ack=False) as field:
        ra, dec = field.getcell("PHASE_DIR", 0)[0]
    centre = Calibrator(
        name="centre", aliases=(), ra_deg=float(np.degrees(ra)) % 360,
        dec_deg=float(np.degrees(dec)), flux_jy=1.0, ref_freq_hz=1e9, spectral_index=0.0,
        reference="test",
    )  # fmt: skip
    dask.compute(add_model_write_graph(ms, centre, primary_beam=False))
    with table(str(ms), ack=False) as main:
        model = main.getcol("MODEL_DATA")
        field_ids = main.getcol("FIELD_ID")
    model = model[field_ids == 0]
    for k, name in enumerate(order):
        expected = 1.0 if name in PARALLEL else 0.0
        np.testing.assert_allclose(model[:, :, k], expected, atol=1e-5, err_msg=name)


# archive -> (telescope, correlation names, ANTENNA rows, antennas with data)
INSPECTED = {
    "alma_x5707.ms.tgz": ("ALMA", ["XX", "YY"], 2, 2),
    "ata_3c286.ms.tgz": ("ATA", ["XX", "XY", "YX", "YY"], 43, 28),
    "ovro_lwa_2018-03-21.ms.tgz": ("OVRO_MMA", ["XX", "YY", "XY", "YX"], 256, 20),
    "mwa_birli.ms.tgz": ("MWA", ["XX", "XY", "YX", "YY"], 128, 1),
    "paper_xy.ms.tgz": ("PAPER", ["XY"], 64, 6),
    "lwa_sv_adp.ms.tgz": ("LWASV", ["XX", "XY", "YX", "YY"], 4, 4),
}


@pytest.mark.parametrize("archive", sorted(INSPECTED))
def test_every_real_ms_is_inspected(tmp_path, archive):
    """Only antennas with rows count; the telescope and its dishes come from the MS."""
    ms = _unpack(archive, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "inspect", str(ms), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    telescope, corr_names, n_listed, n_with_data = INSPECTED[archive]
    assert summary["telescope"] == telescope
    assert summary["n_antennas_listed"] == n_listed
    assert len(summary["antenna_names"]) == n_with_data
    assert all(name.strip() for name in summary["antenna_names"])
    assert list(summary["corr_names"]) == corr_names
    assert summary["dish_from_ms"] and summary["dish_diameter_m"] > 0
    assert summary["n_rows"] > 0 and summary["spws"]


def _contimg(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ata(tmp_path_factory):
    return _unpack("ata_3c286.ms.tgz", tmp_path_factory.mktemp("ata"))


def test_ata_3c286_is_phased_to_the_catalog_source(ata):
    result = _contimg("check-phasing", ata, "--calibrator", "3C286", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (field,) = report["fields"]
    assert field["separation_arcmin"] == pytest.approx(0.0, abs=0.01)
    assert report["model_source"] == "prediction" and report["phased_to_calibrator"]
    # DATA in 'uncalib' units: instrumental phases, not a misalignment
    assert field["data_model_phase_scatter_deg"] is not None
    assert field["verdict"] == "uncalibrated", field["detail"]


def test_ata_qa_reads_its_units_weights_and_antennas(ata, tmp_path):
    """DATA in 'uncalib' units, WEIGHT negative: the model is predicted, DATA-vs-MODEL
    figures are shown but not judged, and only the 28 antennas with data count."""
    result = _contimg("qa", ata, "--calibrator", "3C286", "--out", tmp_path / "qa", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["data_units"] == "uncalib" and summary["model_predicted"]
    assert summary["array"]["n_antennas_with_data"] == 28
    assert summary["array"]["n_antennas_listed"] == 43
    assert summary["array"]["telescope"] == "ATA" and summary["array"]["dish_diameter_m"] == 6.1
    metrics = summary["visibilities"]["calibrator"]["metrics"]
    for key in ("data_model_phase_scatter_deg", "median_data_model_amp_ratio"):
        assert metrics[key]["value"] is not None
        assert metrics[key]["verdict"] == "not judged", metrics[key]["line"]
    assert len(summary["visibilities"]["antennas"]) == 28
    assert not any("misaligned" in line for line in summary["verdicts"])


@pytest.mark.parametrize("engine", ["casa", "native"])
def test_ata_calibration_refuses_in_one_line_with_casas_reason(ata, tmp_path, engine):
    """One integration and 16 channels: the pre-bandpass solve lacks baselines beyond
    1 klambda, the bandpass lacks SNR; each says so (from CASA's own statistics, or the
    native engine's, which agree)."""

    result = _contimg("calibrate", ata, "--calibrator", "3C286", "--refant", "1b",
                      "--out", tmp_path / "cal", "--engine", engine)  # fmt: skip
    assert result.returncode == 1
    assert "baselines per antenna" in one_error_line(result)
    result = _contimg("calibrate", ata, "--calibrator", "3C286", "--refant", "1b",
                      "--no-prebp-phase", "--out", tmp_path / "cal2",
                      "--engine", engine)  # fmt: skip
    assert result.returncode == 1
    line = one_error_line(result)
    assert "kept no solutions" in line and "below minsnr 5" in line
    assert "no positive WEIGHT" in result.stderr + result.stdout
    assert not (tmp_path / "cal2" / "ata_3c286_C0352.cal.mms").exists()


def test_a_position_without_flux_is_refused_where_the_flux_matters(ata):

    result = _contimg("write-model", ata, "--cal-ra", "10", "--cal-dec", "10")
    assert result.returncode == 2
    assert "--cal-flux" in one_error_line(result)
    with table(str(ata), ack=False) as main:
        assert "MODEL_DATA" not in main.colnames()


def test_paper_xy_only_is_refused_for_models_and_calibration(tmp_path):
    """PAPER's file holds XY only: no parallel hand carries an unpolarised calibrator."""

    ms = _unpack("paper_xy.ms.tgz", tmp_path)
    for command in (
        ("write-model", ms, "--cal-ra", "10", "--cal-dec", "10", "--cal-flux", "1"),
        ("calibrate", ms, "--cal-ra", "10", "--cal-dec", "10", "--cal-flux", "1",
         "--field", "0", "--out", tmp_path / "cal"),
    ):  # fmt: skip
        result = _contimg(*command)
        assert result.returncode == 2, result.stderr
        assert "no parallel-hand correlation (XY only)" in one_error_line(result)
    assert not (tmp_path / "cal").exists()


@pytest.mark.parametrize("archive", sorted(INSPECTED))
def test_every_command_on_every_real_ms_works_or_refuses_in_one_line(tmp_path, archive):
    """check-phasing, qa and calibrate against a source at field 0's phase centre (given
    by position and flux): each works and says what it found, or refuses in one line."""
    ms = _unpack(archive, tmp_path)
    with table(f"{ms}/FIELD", ack=False) as field:
        ra, dec = np.degrees(field.getcell("PHASE_DIR", 0)[0])
    source = ("--cal-ra", f"{ra % 360:.6f}", "--cal-dec", f"{dec:.6f}", "--cal-flux", "10")
    runs = {
        "check-phasing": _contimg("check-phasing", ms, *source, "--json"),
        "qa": _contimg("qa", ms, *source, "--out", tmp_path / "qa", "--json"),
        "calibrate": _contimg("calibrate", ms, *source, "--field", "0", "--refant", "0",
                              "--out", tmp_path / "cal", "--n-workers", "1", "--json"),
        "calibrate native": _contimg("calibrate", ms, *source, "--field", "0", "--refant",
                                     "0", "--out", tmp_path / "native", "--n-workers", "1",
                                     "--engine", "native", "--json"),
    }  # fmt: skip
    for command, result in runs.items():
        assert "Traceback" not in result.stderr, (command, result.stderr)
        if result.returncode == 0:
            continue
        assert result.returncode in (1, 2, 3), (command, result.returncode, result.stderr)
        lines = [x for x in result.stderr.splitlines() if x.startswith("contimg: ")]
        assert len(lines) == 1, (command, result.stderr)
    for command in ("check-phasing", "qa"):
        if runs[command].returncode == 0:
            json.loads(runs[command].stdout)
    if runs["qa"].returncode == 0:
        summary = json.loads(runs["qa"].stdout)
        assert summary["array"]["n_antennas_with_data"] == INSPECTED[archive][3]
    _same_outcome_with_both_engines(runs["calibrate"], runs["calibrate native"])


def _same_outcome_with_both_engines(casa, native):
    """The native engine gives CASA's solutions or refuses at the same step."""
    assert native.returncode == casa.returncode, (casa.stderr, native.stderr)
    if not casa.stdout.strip():  # refused before any work: the same words
        assert one_error_line(native) == one_error_line(casa)
        return
    (casa_obs,), (native_obs,) = (json.loads(r.stdout)["observations"] for r in (casa, native))
    assert sorted((s["step"], s["spw"], s["status"]) for s in native_obs["steps"]) == sorted(
        (s["step"], s["spw"], s["status"]) for s in casa_obs["steps"]
    )
    for step, casa_table in casa_obs["merged_tables"].items():
        assert_solutions_agree(casa_table, native_obs["merged_tables"][step], step)
