"""Coordinate, beam and predict kernels against direct references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.sky.beam import airy_fwhm_rad, airy_power_response
from dsa110_contimg.sky.coordinates import (
    angular_separation,
    direction_cosines,
    local_sidereal_time,
)
from dsa110_contimg.sky.predict_kernels import point_source_visibilities


def test_lst_matches_astropy():
    from astropy import units as u
    from astropy.coordinates import Longitude
    from astropy.time import Time

    mjd_s = 60690.4 * 86400 + np.linspace(0, 86400 * 3, 17)
    ours = np.degrees(local_sidereal_time(mjd_s, -118.283405))
    theirs = (
        Time(mjd_s / 86400, format="mjd", scale="utc")
        .sidereal_time("mean", longitude=Longitude(-118.283405 * u.deg))
        .deg
    )
    assert np.max(np.abs((ours - theirs + 180) % 360 - 180)) * 3600 < 20


def test_notes_separation_is_54_7_arcmin():
    sep = angular_separation(*np.radians([128.571864, 54.665223, 128.7287, 55.5725]))
    assert np.degrees(sep) * 60 == pytest.approx(54.7, abs=0.05)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0, 2 * np.pi), st.floats(-1.5, 1.5), st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)
)
def test_direction_cosines_preserve_separation(ra0, dec0, dra, ddec):
    ra, dec = ra0 + dra, np.clip(dec0 + ddec, -1.55, 1.55)
    l, m, n = direction_cosines(ra, dec, ra0, dec0)
    assert l * l + m * m + n * n == pytest.approx(1.0)
    # arcsin of the projected length stays precise at tiny separations (arccos of n does not).
    assert np.arcsin(np.hypot(l, m)) == pytest.approx(
        angular_separation(ra0, dec0, ra, dec), abs=1e-9
    )


def test_airy_beam_half_power_at_fwhm():
    freq = 1.4e9
    half = airy_fwhm_rad(freq) / 2
    assert airy_power_response(half, freq) == pytest.approx(0.5, abs=1e-3)
    assert airy_power_response(0.0, freq) == 1.0
    assert np.degrees(airy_fwhm_rad(freq)) == pytest.approx(2.72, abs=0.05)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**31))
def test_predict_matches_explicit_loop(n_row, n_chan, n_src, seed):
    rng = np.random.default_rng(seed)
    uvw = rng.normal(0, 300, (n_row, 3))
    lm = rng.uniform(-0.03, 0.03, (n_src, 2))
    lmn = np.c_[lm, np.sqrt(1 - (lm**2).sum(1))]
    freq = rng.uniform(1.3e9, 1.5e9, n_chan)
    flux = rng.uniform(0.1, 10, (n_src, n_chan))
    got = point_source_visibilities(uvw, lmn, freq, flux)
    want = np.zeros((n_row, n_chan), complex)
    for r in range(n_row):
        for c in range(n_chan):
            for s in range(n_src):
                u, v, w = uvw[r] * freq[c] / 299_792_458.0
                l, m, n = lmn[s]
                want[r, c] += flux[s, c] * np.exp(2j * np.pi * (u * l + v * m + w * (n - 1)))
    assert np.allclose(got, want, rtol=1e-10, atol=1e-10)
