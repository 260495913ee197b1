"""The correlator's UVH5 subband files: simulated, converted, compared with the direct MS."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from casacore.tables import table

from conftest import REPO_ROOT, one_error_line
from dsa110_contimg.phasing.check import check_phasing
from dsa110_contimg.simulate import preset, simulate_observation
from dsa110_contimg.sky.calibrators import lookup_calibrator

pytestmark = pytest.mark.slow  # simulates and converts whole observations

REALDATA = REPO_ROOT.parent / "shared" / "realdata"
# Every subband (16 SPWs), 24 integrations: the notes' geometry at a tenth of the antennas.
CONFIG = {"n_spw": 16, "n_chan": 4, "n_times": 24, "seed": 3}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dsa110_contimg", *map(str, args)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def subbands(tmp_path_factory):
    """The same observation as subband files and as a directly simulated MS."""
    root = tmp_path_factory.mktemp("raw")
    result = run_cli("simulate", root / "raw", "--format", "uvh5", "--preset", "tiny",
                     "--n-spw", 16, "--n-chan", 4, "--n-times", 24, "--seed", 3)  # fmt: skip
    assert result.returncode == 0, result.stderr
    direct = simulate_observation(root / "direct.ms", preset("tiny", **CONFIG))
    return root / "raw", direct.ms_path


def _rows(ms):
    with table(str(ms), ack=False) as t, table(f"{ms}/DATA_DESCRIPTION", ack=False) as dd:
        spw = dd.getcol("SPECTRAL_WINDOW_ID")[t.getcol("DATA_DESC_ID")]
        key = np.stack([np.round(t.getcol("TIME"), 2), t.getcol("ANTENNA1"),
                        t.getcol("ANTENNA2"), spw], axis=1)  # fmt: skip
        order = np.lexsort(key.T[::-1])
        return key[order], t.getcol("DATA")[order], t.getcol("FLAG")[order]


def test_subband_files_look_like_the_correlators(subbands):
    raw, _ = subbands
    files = sorted(raw.glob("*_sb*.hdf5"))
    assert len(files) == 16 and (raw / f"{files[0].name[:19]}.truth.npz").exists()
    first = {}
    for f in (files[0], files[-1]):
        with h5py.File(f, "r") as h:
            header = h["Header"]
            assert header["uvw_array"].dtype == np.float32
            assert len(header["antenna_names"]) == 117  # every station
            assert header["phase_center_catalog"] is not None
            first[f.name] = float(np.min(header["freq_array"][()]))
            assert "phase_center_dec" in header["extra_keywords"]
    assert first[files[0].name] > first[files[-1].name]  # sb00 holds the highest frequencies


def test_round_trip_equals_the_direct_ms(subbands, tmp_path):
    raw, direct = subbands
    before = digest(raw)
    result = run_cli("convert", raw, "--out", tmp_path / "out", "--n-workers", 2)
    assert result.returncode == 0, result.stderr
    (converted,) = (tmp_path / "out").glob("*.ms")
    for check in ("frequencies ascending", "phase centres at each integration's meridian",
                  "UVW lengths within", "antenna positions equal"):  # fmt: skip
        assert check in result.stdout
    assert digest(raw) == before, "inputs changed"
    key_a, data_a, flag_a = _rows(direct)
    key_b, data_b, flag_b = _rows(converted)
    np.testing.assert_array_equal(key_a, key_b)
    assert np.linalg.norm(data_a - data_b) / np.linalg.norm(data_a) < 1e-4
    np.testing.assert_array_equal(flag_a, flag_b)
    with table(f"{direct}/FIELD", ack=False) as a, table(f"{converted}/FIELD", ack=False) as b:
        assert list(a.getcol("NAME")) == list(b.getcol("NAME"))
        offset = np.degrees(np.abs(a.getcol("PHASE_DIR") - b.getcol("PHASE_DIR"))).max() * 3600
        assert offset < 1.0
    with (
        table(f"{direct}/SPECTRAL_WINDOW", ack=False) as a,
        table(f"{converted}/SPECTRAL_WINDOW", ack=False) as b,
    ):
        np.testing.assert_allclose(a.getcol("CHAN_FREQ"), b.getcol("CHAN_FREQ"), rtol=0, atol=1)
    with table(f"{converted}/ANTENNA", ack=False) as t:
        assert t.nrows() == 117
    # the notes' case: the field phased near RA 128.571864 is 54.7 arcmin from 0834+555
    calibrator = lookup_calibrator("0834+555")
    for ms in (direct, converted):
        fields = check_phasing(ms, calibrator, visibilities=False).fields
        notes = min(fields, key=lambda f: abs(f.geometry.phase_dir_deg[0] - 128.571864))
        assert notes.geometry.separation_arcmin == pytest.approx(54.7, abs=0.15)
        assert notes.verdict == "not phased"
    # the simulation truth travels with the MS
    assert Path(f"{converted}.truth.npz").exists()


def test_dry_run_lists_observations_and_what_is_missing(subbands, tmp_path):
    raw, _ = subbands
    partial = tmp_path / "raw"
    shutil.copytree(raw, partial)
    next(partial.glob("*_sb05.hdf5")).unlink()
    result = run_cli("convert", partial, "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "missing sb05 (15 of 16 subbands)" in result.stdout
    assert not (tmp_path / "out").exists()


def test_missing_subband_skipped_or_converted_with_allow_partial(subbands, tmp_path):
    raw, _ = subbands
    partial = tmp_path / "raw"
    shutil.copytree(raw, partial)
    next(partial.glob("*_sb05.hdf5")).unlink()
    skipped = run_cli("convert", partial, "--out", tmp_path / "out")
    assert skipped.returncode == 2
    assert "missing sb05" in one_error_line(skipped)
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "something was written"
    converted = run_cli("convert", partial, "--out", tmp_path / "out", "--allow-partial",
                        "--n-workers", 1)  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    (ms,) = (tmp_path / "out").glob("*.ms")
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as t:
        assert t.nrows() == 15


def _bad_copy(raw, tmp_path, kind, other=None) -> Path:
    folder = tmp_path / kind
    shutil.copytree(raw, folder)
    sb = {p.name[-9:-5]: p for p in folder.glob("*_sb*.hdf5")}
    if kind == "truncated":
        data = sb["sb02"].read_bytes()
        sb["sb02"].write_bytes(data[: len(data) // 2])
    elif kind == "not-hdf5":
        sb["sb03"].write_text("not an HDF5 file\n")
    elif kind == "channels":
        shutil.copyfile(next(other.glob("*_sb07.hdf5")), sb["sb07"])
    elif kind == "two-groups":
        for name in ("sb08", "sb09", "sb10", "sb11", "sb12", "sb13", "sb14", "sb15"):
            sb[name].unlink()
        for f in sorted(other.glob("*_sb0*.hdf5")):
            shutil.copyfile(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def other_subbands(tmp_path_factory):
    """Another observation, an hour later, with 2 channels per subband."""
    root = tmp_path_factory.mktemp("raw_other")
    result = run_cli("simulate", root / "raw", "--format", "uvh5", "--preset", "tiny",
                     "--n-spw", 16, "--n-chan", 2,
                     "--start-time", "2025-01-15T10:00:00")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root / "raw"


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("truncated", "is not a readable UVH5 file"),
        ("not-hdf5", "is not a readable UVH5 file"),
        ("channels", "subbands differ in channels"),
        ("two-groups", "missing sb08"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(subbands, other_subbands, tmp_path, kind,
                                                  fragment):  # fmt: skip
    raw, _ = subbands
    folder = _bad_copy(raw, tmp_path, kind, other_subbands)
    if kind == "channels":  # the copied file keeps its own time stamp: rename it into the group
        stamp = next(folder.glob("*_sb00.hdf5")).name[:19]
        for f in folder.glob("*_sb07.hdf5"):
            f.rename(folder / f"{stamp}_sb07.hdf5")
    before = digest(folder)
    result = run_cli("convert", folder, "--out", tmp_path / "out", "--n-workers", 1)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in one_error_line(result)
    assert digest(folder) == before
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "something was written"


def test_real_drift_scan_gets_a_field_per_integration_at_its_meridian(tmp_path):
    result = run_cli("convert", REALDATA / "hera_drift.uvh5", "--out", tmp_path / "hera.ms",
                     "--n-workers", 1, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (converted,) = json.loads(result.stdout)["converted"]
    assert converted["ms"] == str(tmp_path / "hera.ms")
    assert any("20 field(s), largest offset 0.000 arcsec" in c for c in converted["checks"])
    with table(str(tmp_path / "hera.ms"), ack=False) as t:
        times, fields = t.getcol("TIME"), t.getcol("FIELD_ID")
    # one field per integration
    for f in np.unique(fields):
        assert len(np.unique(times[fields == f])) == 1
    assert len(np.unique(fields)) == len(np.unique(times)) == 20


def test_real_phased_file_is_refused_in_one_line(tmp_path):
    result = run_cli("convert", REALDATA / "ata_3c286.uvh5", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "phased, not a drift scan" in one_error_line(result)
    assert not (tmp_path / "out").exists()
