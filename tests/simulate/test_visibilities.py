"""Simulated visibilities equal the sky, the gains and the noise saved as truth."""

import numpy as np
import pytest
from casacore.tables import table
from scipy.special import j1

from dsa110_contimg import casa_env
from dsa110_contimg.simulate import load_truth

C = 299_792_458.0


def _unit_vector(ra, dec):
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _reference_dft(ms, truth, with_beam):
    """Independent DFT: rotate the source unit vector into each field's (l, m, n) frame."""
    with table(str(ms), ack=False) as main:
        uvw = main.getcol("UVW")
        field_id = main.getcol("FIELD_ID")
        ddid = main.getcol("DATA_DESC_ID")
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        freq = spw.getcol("CHAN_FREQ")
    with table(f"{ms}/FIELD", ack=False) as field:
        centre = field.getcol("PHASE_DIR")[:, 0, :]
    model = np.zeros((len(uvw), freq.shape[1]), complex)
    for source in truth.meta["sky"]:
        s = _unit_vector(np.radians(source["ra_deg"]), np.radians(source["dec_deg"]))
        ra0, dec0 = centre[field_id, 0], centre[field_id, 1]
        east = np.stack([-np.sin(ra0), np.cos(ra0), np.zeros_like(ra0)], axis=-1)
        north = np.stack(
            [-np.sin(dec0) * np.cos(ra0), -np.sin(dec0) * np.sin(ra0), np.cos(dec0)], axis=-1
        )
        toward = _unit_vector(ra0, dec0)
        l, m, n = east @ s, north @ s, toward @ s
        nu = freq[ddid]
        flux = source["flux_jy"] * (nu / source["ref_freq_hz"]) ** source["spectral_index"]
        if with_beam:
            theta = np.arccos(np.clip(n, -1, 1))[:, None]
            x = np.pi * 4.65 * np.sin(theta) * nu / C
            flux = flux * (2 * j1(x) / x) ** 2
        phase = (
            2
            * np.pi
            * nu
            / C
            * (uvw[:, :1] * l[:, None] + uvw[:, 1:2] * m[:, None] + uvw[:, 2:] * (n[:, None] - 1))
        )
        model += flux * np.exp(1j * phase)
    return model


def _read(ms, column="DATA"):
    with table(str(ms), ack=False) as main:
        return (
            main.getcol(column),
            main.getcol("ANTENNA1"),
            main.getcol("ANTENNA2"),
            main.getcol("FIELD_ID"),
            main.getcol("DATA_DESC_ID"),
        )


def test_noiseless_uncorrupted_matches_numpy_dft(make_observation):
    ms = make_observation("small", noise=False, corrupt=False, n_field_sources=3)
    truth = load_truth(ms)
    data, a1, a2, _, _ = _read(ms)
    cross = a1 != a2
    expected = _reference_dft(ms, truth, with_beam=True)[cross]
    for corr in range(2):
        error = np.abs(data[cross, :, corr] - expected)
        assert np.max(error) / np.max(np.abs(expected)) < 1e-3


def test_noiseless_calibrator_matches_casa_predict(make_observation, tmp_path):
    """The same sky predicted by the casatools simulator (beam off on both sides)."""
    import shutil

    ms = make_observation("tiny", noise=False, corrupt=False, primary_beam=False)
    truth = load_truth(ms)
    copy = tmp_path / "casa_predict.ms"
    shutil.copytree(ms, copy)
    tools = casa_env.casatools()
    cl = tools.componentlist()
    source = truth.meta["sky"][0]
    with casa_env.casa_output_to_log():
        cl.addcomponent(
            dir=f"J2000 {source['ra_deg']}deg {source['dec_deg']}deg",
            flux=source["flux_jy"],
            fluxunit="Jy",
            freq=f"{source['ref_freq_hz']}Hz",
            shape="point",
            spectrumtype="spectral index",
            index=source["spectral_index"],
        )
        cl.rename(str(tmp_path / "cal.cl"))
        cl.close()
        sim = tools.simulator()
        sim.openfromms(str(copy))
        sim.predict(complist=str(tmp_path / "cal.cl"), incremental=False)
        sim.close()
    ours, a1, a2, _, _ = _read(ms)
    casa, *_ = _read(copy)
    cross = a1 != a2
    assert np.max(np.abs(ours[cross] - casa[cross])) / np.max(np.abs(casa)) < 1e-3


def test_noiseless_corrupted_is_gains_times_model(make_observation):
    clean = make_observation("small", noise=False, corrupt=False, seed=5)
    corrupted = make_observation("small", noise=False, seed=5)
    truth = load_truth(corrupted)
    model, a1, a2, field_id, ddid = _read(clean)
    data, *_ = _read(corrupted)
    gains = np.stack([truth.gains(spw) for spw in range(truth.bandpass.shape[1])])
    g1 = gains[ddid, a1, field_id]  # (row, chan, corr); field i is integration i
    g2 = gains[ddid, a2, field_id]
    cross = a1 != a2
    expected = (g1 * np.conj(g2) * model)[cross]
    assert np.max(np.abs(data[cross] - expected)) / np.max(np.abs(expected)) < 1e-5
    assert np.std(np.angle(truth.bandpass)) > np.radians(10)  # the corruption is not trivial


def test_noise_follows_radiometer_equation(make_observation):
    clean = make_observation("small", noise=False, corrupt=False, seed=5)
    noisy = make_observation("small", seed=5)
    truth = load_truth(noisy)
    model, a1, a2, field_id, ddid = _read(clean)
    data, *_ = _read(noisy)
    gains = np.stack([truth.gains(spw) for spw in range(truth.bandpass.shape[1])])
    g1, g2 = gains[ddid, a1, field_id], gains[ddid, a2, field_id]
    cross = a1 != a2
    residual = (data / (g1 * np.conj(g2)) - model)[cross]
    config = truth.meta["config"]
    chan_width = 187.5e6 / 16 / config["n_chan"]
    expected_sigma = config["sefd_jy"] / np.sqrt(2 * chan_width * config["integration_s"])
    assert truth.meta["noise_sigma_jy"][0] == pytest.approx(expected_sigma, rel=1e-6)
    for part in (residual.real, residual.imag):
        assert np.std(part) == pytest.approx(expected_sigma, rel=0.05)
    assert abs(np.mean(residual)) < 0.02 * expected_sigma


def test_dead_antenna_rfi_zero_rows_and_autocorrelations(make_observation):
    ms = make_observation(
        "small", dead_antennas=("DSA006",), n_rfi_spikes=4, zero_row_fraction=0.02, seed=3
    )
    truth = load_truth(ms)
    data, a1, a2, field_id, ddid = _read(ms)
    names = truth.antenna_names
    dead = names.index("DSA006")
    assert np.all(truth.bandpass[dead] == 0)
    sigma = truth.meta["noise_sigma_jy"][0]
    rfi_blocks = {(t, spw) for t, spw, _ in truth.rfi_cells.tolist()}
    clean_block = np.array([(t, s) not in rfi_blocks for t, s in zip(field_id, ddid, strict=True)])
    on_dead = ((a1 == dead) | (a2 == dead)) & (a1 != a2) & (np.abs(data).sum(axis=(1, 2)) > 0)
    on_dead &= clean_block
    # Noise only: the coherent average over rows vanishes, unlike a live baseline.
    assert np.abs(data[on_dead].mean(axis=0)).max() < 5 * sigma / np.sqrt(on_dead.sum())
    zero_keys = {tuple(r) for r in truth.zero_rows.tolist()}
    assert len(zero_keys) > 0
    row_keys = list(zip(field_id, ddid, a1, a2, strict=True))
    zero_mask = np.array([k in zero_keys for k in row_keys])
    assert np.all(data[zero_mask] == 0)
    assert not np.any(np.all(data[~zero_mask] == 0, axis=(1, 2)))
    for t, spw, chan in truth.rfi_cells.tolist():
        rows = (field_id == t) & (ddid == spw) & (a1 != a2) & ~zero_mask
        assert np.median(np.abs(data[rows, chan])) > 50 * sigma
    autos = (a1 == a2) & ~zero_mask
    with_data = truth.meta["antennas_with_data"]
    assert (
        autos.sum()
        == len(with_data) * truth.bandpass.shape[1] * len(truth.meta["time_mjd_s"])
        - (zero_mask & (a1 == a2)).sum()
    )
    live_autos = autos & (a1 != dead)
    assert np.all(np.abs(data[live_autos].imag) == 0)
    assert np.median(data[live_autos].real) > 0.5 * truth.meta["config"]["sefd_jy"]


def test_antenna_table_lists_every_station_as_the_converter_does(make_observation):
    """All 117 stations in the ANTENNA table (those without data have no rows), OVRO_MMA."""
    from dsa110_contimg.ms.antennas import array_of
    from dsa110_contimg.simulate.array_layout import N_STATIONS

    ms = make_observation("small", noise=False, corrupt=False, seed=5)
    truth = load_truth(ms)
    array = array_of(ms)
    assert len(array.names) == N_STATIONS and array.telescope == "OVRO_MMA"
    assert array.names_with_data == truth.meta["antennas_with_data"]
    assert int(array.has_data.sum()) == 24
    _, a1, a2, _, _ = _read(ms)
    assert set(np.unique(np.r_[a1, a2])) == set(array.with_data.tolist())
    with table(f"{ms}/FEED", ack=False) as feed:
        assert sorted(feed.getcol("ANTENNA_ID").tolist()) == list(range(N_STATIONS))
    # a station without data sits where the layout puts it, not at the centre of the Earth
    assert np.all(np.linalg.norm(array.positions_m[~array.has_data], axis=1) > 6.3e6)
    assert array.uv_max_m() < 3000.0
