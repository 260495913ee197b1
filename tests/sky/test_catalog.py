"""Calibrator catalog: built-ins, spellings, nearest, spectra, user files."""

import numpy as np
import pytest

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.sky.calibrators import (
    BUILTIN_CALIBRATORS,
    load_catalog,
    lookup_calibrator,
    nearest_calibrator,
    parse_sexagesimal,
)


@pytest.mark.parametrize("name", ["0834+555", "J0834+5534", "j0834+5534", "B0834+555", "4C+55.16"])
def test_0834_in_any_spelling(name):
    cal = lookup_calibrator(name)
    assert cal.name == "0834+555"
    assert cal.ra_deg == pytest.approx(128.72877, abs=1e-4)
    assert cal.dec_deg == pytest.approx(55.57252, abs=1e-4)
    assert cal.flux_at(1.4e9) == pytest.approx(8.8)
    assert cal.spectral_index == pytest.approx(-0.38)


def test_flux_follows_power_law():
    cal = lookup_calibrator("0834+555")
    freq = np.array([1.3e9, 1.4e9, 1.5e9])
    assert np.allclose(cal.flux_at(freq), 8.8 * (freq / 1.4e9) ** -0.38)
    assert cal.flux_at(4.86e9) == pytest.approx(5.6, rel=0.05)  # VLA 6 cm figure


def test_every_builtin_documents_its_figures():
    for cal in BUILTIN_CALIBRATORS:
        assert cal.reference and cal.flux_jy > 0 and cal.ref_freq_hz > 0
        assert -2 < cal.spectral_index < 1
        assert cal.dec_deg > -30  # visible from OVRO


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ContimgError, match="unknown calibrator 'NOPE'.*0834\\+555"):
        lookup_calibrator("NOPE")


def test_nearest_within_radius():
    assert nearest_calibrator(128.70, 55.55, radius_deg=0.1).name == "0834+555"
    assert nearest_calibrator(128.70, 54.0, radius_deg=0.1) is None


def test_sexagesimal():
    assert parse_sexagesimal("08h34m54.904s", hours=True) == pytest.approx(128.72877, abs=1e-5)
    assert parse_sexagesimal("55d34'21.07\"", hours=False) == pytest.approx(55.57252, abs=1e-5)
    assert parse_sexagesimal("-00:30:00", hours=False) == pytest.approx(-0.5)


VLA_TEXT = """\
IAU NAME: J0834+5534
J0834+5534   J2000  A 08h34m54.903995s  55d34'21.070460"  Aug01  4C55.16
0831+557     B1950  A 08h31m04.378000s  55d44'41.230000"
-----------------------------------------------------
BAND        A B C D    FLUX(Jy)    UVMIN(kL)  UVMAX(kL)
=====================================================
 20cm    L  P P S S       8.80
  6cm    C  X P S S       5.60
 3.7cm   X  X P S S       3.30

IAU NAME: J1331+3030
J1331+3030   J2000  A 13h31m08.287984s  30d30'32.958850"  Aug01  3C286
1328+307     B1950  A 13h28m49.657700s  30d45'58.640000"
-----------------------------------------------------
BAND        A B C D    FLUX(Jy)    UVMIN(kL)  UVMAX(kL)
=====================================================
 20cm    L  P P P P      15.00
"""


def test_vla_calibrator_list_reader(tmp_path):
    path = tmp_path / "vlacals.txt"
    path.write_text(VLA_TEXT)
    catalog = load_catalog(path)
    assert [c.name for c in catalog] == ["J0834+5534", "J1331+3030"]
    cal = lookup_calibrator("0831+557", catalog)  # B1950 alias
    assert cal.ra_deg == pytest.approx(128.72877, abs=1e-4)
    assert cal.flux_jy == 8.8 and cal.ref_freq_hz == 1.4e9
    assert cal.spectral_index == pytest.approx(np.log(5.6 / 8.8) / np.log(4.86 / 1.4))
    assert lookup_calibrator("3C286", catalog).spectral_index == -0.7  # only 20 cm given


def test_csv_reader_and_its_errors(tmp_path):
    good = tmp_path / "cals.csv"
    good.write_text(
        "# my calibrators\nname,ra_deg,dec_deg,flux_jy,ref_freq_mhz,spectral_index,aliases\n"
        "MYCAL,08:34:54.904,+55:34:21.07,7.5,1400,-0.5,J0834+5534;X1\n"
    )
    (cal,) = load_catalog(good)
    assert cal.ra_deg == pytest.approx(128.72877, abs=1e-5)
    assert cal.flux_at(1.4e9) == 7.5
    assert lookup_calibrator("X1", (cal,)) is cal
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ra_deg\nA,1\n")
    with pytest.raises(ContimgError, match="line 2"):
        load_catalog(bad)
    with pytest.raises(ContimgError, match="does not exist"):
        load_catalog(tmp_path / "missing.csv")
