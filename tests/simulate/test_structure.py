"""The simulated MS has the documented DSA-110 structure."""

import numpy as np
import pytest
from casacore.tables import table
from daskms import xds_from_ms, xds_from_table

from dsa110_contimg import instrument
from dsa110_contimg.simulate import PRESETS, load_truth
from dsa110_contimg.simulate.array_layout import (
    INACTIVE_STATIONS,
    active_stations,
    select_stations,
    station_enu,
)


def test_layout_has_96_active_stations_on_two_arms_and_outriggers():
    names = active_stations()
    assert len(names) == 96
    assert not set(names) & INACTIVE_STATIONS
    enu = station_enu()
    ew = np.array([enu[f"DSA{k:03d}"] for k in range(1, 52)])
    ns = np.array([enu[f"DSA{k:03d}"] for k in range(52, 103)])
    assert np.ptp(ew[:, 0]) == pytest.approx(396, abs=1) and np.all(ew[:, 1] == 0)
    assert ns[:, 1].min() == pytest.approx(8, abs=0.5) and ns[:, 1].max() == pytest.approx(
        442, abs=1
    )
    outriggers = np.array([enu[n] for n in names if int(n[3:]) >= 103])
    longest = max(np.linalg.norm(a - b) for a in outriggers for b in outriggers)
    assert 2500 < longest < 2900


def test_station_subsets_keep_both_arms_outriggers_and_refant():
    for n in (4, 10, 24, 48):
        chosen = select_stations(n)
        numbers = [int(s[3:]) for s in chosen]
        assert len(chosen) == n
        assert "DSA103" in chosen
        assert any(k <= 51 for k in numbers) and any(52 <= k <= 102 for k in numbers)


def test_full_preset_row_count_matches_the_real_files():
    full = PRESETS["full"]
    n_bl = full.n_antennas * (full.n_antennas + 1) // 2
    assert n_bl == 4656
    assert n_bl * full.n_times * full.n_spw == 1_787_904
    assert full.chan_width_hz == pytest.approx(244_140.625)


def test_ms_structure_read_with_casacore(corrupted_small):
    ms = str(corrupted_small)
    truth = load_truth(ms)
    config = truth.meta["config"]
    n_ant, n_spw, n_chan, n_times = (
        config[k] for k in ("n_antennas", "n_spw", "n_chan", "n_times")
    )
    with table(f"{ms}/ANTENNA", ack=False) as ant:
        names = list(ant.getcol("NAME"))
        # every station, as the converter writes; the simulated ones have the rows
        assert names == list(station_enu())
        assert truth.meta["antennas_with_data"] == select_stations(n_ant)
        assert np.allclose(ant.getcol("DISH_DIAMETER"), 4.65)
        site = np.array([-2409588.2, -4478197.7, 3838765.9])  # array centre, ITRF
        assert np.all(np.linalg.norm(ant.getcol("POSITION") - site, axis=1) < 3000)
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        freq = spw.getcol("CHAN_FREQ")
        width = instrument.SPW_BANDWIDTH_HZ / n_chan
        expected = 1311.25e6 + (np.arange(n_spw * n_chan).reshape(n_spw, n_chan) + 0.5) * width
        assert np.allclose(freq, expected, rtol=0, atol=1.0)
        assert np.allclose(spw.getcol("CHAN_WIDTH"), width)
        assert np.all(np.diff(freq[:, 0]) > 0)  # SPW 0 lowest
    with table(f"{ms}/POLARIZATION", ack=False) as pol:
        assert list(pol.getcol("CORR_TYPE")[0]) == [9, 12]  # XX, YY
    with table(f"{ms}/FIELD", ack=False) as field:
        assert list(field.getcol("NAME")) == [f"meridian_icrs_t{i}" for i in range(n_times)]
    with table(ms, ack=False) as main:
        assert main.nrows() == n_ant * (n_ant + 1) // 2 * n_times * n_spw
        assert np.allclose(main.getcol("INTERVAL"), 12.884902)
        assert "MODEL_DATA" not in main.colnames() and "CORRECTED_DATA" not in main.colnames()
        assert main.getcolkeywords("TIME")["MEASINFO"]["Ref"] == "UTC"
        times = np.unique(main.getcol("TIME"))
        assert len(times) == n_times
        assert np.allclose(np.diff(times), 12.884902, atol=1e-4)


def test_field_phase_centres_follow_local_sidereal_time(corrupted_small):
    """Each field's PHASE_DIR RA equals the LST (astropy, independent) at its integration."""
    from astropy import units as u
    from astropy.coordinates import Longitude
    from astropy.time import Time

    ms = str(corrupted_small)
    with table(ms, ack=False) as main:
        field_id = main.getcol("FIELD_ID")
        time_s = main.getcol("TIME")
    with table(f"{ms}/FIELD", ack=False) as field:
        phase_dir = field.getcol("PHASE_DIR")[:, 0, :]
    first_row = np.unique(field_id, return_index=True)[1]
    lst = Time(time_s[first_row] / 86400.0, format="mjd", scale="utc").sidereal_time(
        "mean", longitude=Longitude(instrument.SITE_LONGITUDE_DEG * u.deg)
    )
    ra_error_arcsec = (
        ((np.degrees(phase_dir[:, 0]) - lst.deg + 180) % 360 - 180) * 3600 * np.cos(phase_dir[:, 1])
    )
    assert np.max(np.abs(ra_error_arcsec)) < 20
    assert np.allclose(np.degrees(phase_dir[:, 1]), instrument.DEFAULT_POINTING_DEC_DEG)
    # The default start centres the calibrator transit in the file.
    cal_ra = 128.72876667
    assert np.degrees(phase_dir[0, 0]) < cal_ra < np.degrees(phase_dir[-1, 0])


def test_ms_reads_back_through_dask_ms(corrupted_small):
    ms = str(corrupted_small)
    datasets = xds_from_ms(ms, group_cols=["FIELD_ID", "DATA_DESC_ID"], columns=["DATA", "FLAG"])
    truth = load_truth(ms)
    config = truth.meta["config"]
    assert len(datasets) == config["n_times"] * config["n_spw"]
    n_bl = config["n_antennas"] * (config["n_antennas"] + 1) // 2
    assert {ds.sizes["row"] for ds in datasets} == {n_bl}
    assert {ds.sizes["chan"] for ds in datasets} == {config["n_chan"]}
    assert {ds.sizes["corr"] for ds in datasets} == {2}
    (antenna,) = xds_from_table(f"{ms}::ANTENNA")
    assert antenna.sizes["row"] == len(station_enu())
    assert not bool(datasets[0].FLAG.any().compute())
