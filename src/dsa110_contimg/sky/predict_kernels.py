"""Point-source visibility prediction (numpy only).

Sign convention (CASA's, checked against ``simulator.predict``):
``V = S exp(+2 pi i (u l + v m + w (n - 1)) / lambda)``, with (u, v, w) the
row's UVW in metres and (l, m, n) the source relative to the row's field
phase centre.
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.instrument import SPEED_OF_LIGHT_M_S


def point_source_visibilities(uvw_m, lmn, freq_hz, flux_jy):
    """Sum of point sources for rows that share one phase centre and one SPW.

    Parameters
    ----------
    uvw_m : (row, 3) float
        Baseline coordinates in metres.
    lmn : (src, 3) float
        Direction cosines of each source relative to the phase centre.
    freq_hz : (chan,) float
        Channel frequencies.
    flux_jy : (src, chan) float
        Apparent flux of each source (spectrum and beam already applied).

    Returns
    -------
    vis : (row, chan) complex128
    """
    uvw_m = np.asarray(uvw_m, dtype=float)
    lmn = np.atleast_2d(np.asarray(lmn, dtype=float))
    flux_jy = np.atleast_2d(np.asarray(flux_jy, dtype=float))
    wavenumber = (2.0 * np.pi / SPEED_OF_LIGHT_M_S) * np.asarray(freq_hz, dtype=float)
    vis = np.zeros((uvw_m.shape[0], wavenumber.shape[0]), dtype=np.complex128)
    for (l, m, n), flux in zip(lmn, flux_jy, strict=True):
        # Geometric delay in metres per row; the phase is linear in frequency.
        delay_m = uvw_m[:, 0] * l + uvw_m[:, 1] * m + uvw_m[:, 2] * (n - 1.0)
        vis += flux[None, :] * np.exp(1j * delay_m[:, None] * wavenumber[None, :])
    return vis


def power_law_flux(flux_ref_jy, ref_freq_hz, spectral_index, freq_hz):
    """S(nu) = S_ref (nu / nu_ref) ** alpha; inputs broadcast together."""
    return np.asarray(flux_ref_jy) * (np.asarray(freq_hz) / ref_freq_hz) ** np.asarray(
        spectral_index
    )
