"""Point-source visibility prediction (numpy and numba).

Sign convention (CASA's, checked against ``simulator.predict``):
``V = S exp(+2 pi i (u l + v m + w (n - 1)) / lambda)``, with (u, v, w) the
row's UVW in metres and (l, m, n) the source relative to the row's field
phase centre.
"""

from __future__ import annotations

import numba
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
    uvw_m = np.ascontiguousarray(uvw_m, dtype=float)
    lmn = np.ascontiguousarray(np.atleast_2d(np.asarray(lmn, dtype=float)))
    flux_jy = np.ascontiguousarray(np.atleast_2d(np.asarray(flux_jy, dtype=float)))
    wavenumber = (2.0 * np.pi / SPEED_OF_LIGHT_M_S) * np.asarray(freq_hz, dtype=float)
    vis = np.zeros((uvw_m.shape[0], wavenumber.shape[0]), dtype=np.complex128)
    _add_point_sources(uvw_m, lmn, wavenumber, flux_jy, vis)
    return vis


@numba.njit(cache=True, nogil=True)
def _add_point_sources(uvw_m, lmn, wavenumber, flux_jy, vis):
    for s in range(lmn.shape[0]):
        l, m, n = lmn[s, 0], lmn[s, 1], lmn[s, 2]
        for r in range(uvw_m.shape[0]):
            # geometric delay in metres; the phase is linear in frequency
            delay_m = uvw_m[r, 0] * l + uvw_m[r, 1] * m + uvw_m[r, 2] * (n - 1.0)
            for c in range(wavenumber.shape[0]):
                phase = delay_m * wavenumber[c]
                vis[r, c] += flux_jy[s, c] * complex(np.cos(phase), np.sin(phase))


def point_source_model(uvw_m, field_id, lmn_by_field, freq_hz, flux_by_field, corr_weights):
    """(row, chan, corr) complex64 model of one point source for rows of any fields.

    Each row takes its own field's direction cosines ``lmn_by_field`` (field, 3)
    and apparent flux ``flux_by_field`` (field, chan); each correlation gets
    ``corr_weights`` (corr,) of it. The same values as
    :func:`point_source_visibilities` per field times the weights, rounded to
    complex64 once, written without temporaries.
    """
    wavenumber = (2.0 * np.pi / SPEED_OF_LIGHT_M_S) * np.asarray(freq_hz, dtype=float)
    model = np.empty((len(field_id), len(wavenumber), len(corr_weights)), np.complex64)
    _point_source_model(
        np.ascontiguousarray(uvw_m, dtype=float),
        np.ascontiguousarray(field_id, dtype=np.int64),
        np.ascontiguousarray(lmn_by_field, dtype=float),
        wavenumber,
        np.ascontiguousarray(flux_by_field, dtype=float),
        np.ascontiguousarray(corr_weights, dtype=float),
        model,
    )
    return model


@numba.njit(cache=True, nogil=True)
def _point_source_model(uvw_m, field_id, lmn, wavenumber, flux, weights, model):
    for r in range(uvw_m.shape[0]):
        f = field_id[r]
        l, m, n = lmn[f, 0], lmn[f, 1], lmn[f, 2]
        delay_m = uvw_m[r, 0] * l + uvw_m[r, 1] * m + uvw_m[r, 2] * (n - 1.0)
        for c in range(wavenumber.shape[0]):
            phase = delay_m * wavenumber[c]
            vis = flux[f, c] * complex(np.cos(phase), np.sin(phase))
            for p in range(weights.shape[0]):
                model[r, c, p] = vis * weights[p]


def rephased_uvw_and_delay(uvw_m, rotation):
    """Rows moved to a new phase centre: their new UVW and the change in w (metres).

    ``rotation`` is :func:`~dsa110_contimg.sky.coordinates.uvw_rotation` of the
    old centre to the new one. With the convention above a visibility toward
    the new centre is the old one times ``exp(+2 pi i (w_old - w_new) / lambda)``
    (as CASA ``phaseshift`` writes it): :func:`times_delay_phasor` of the delay.

    Returns ``(uvw (row, 3), w_old - w_new (row,))``.
    """
    uvw_m = np.asarray(uvw_m, dtype=float)
    new_uvw = uvw_m @ np.asarray(rotation, dtype=float).T
    return new_uvw, uvw_m[:, 2] - new_uvw[:, 2]


def times_delay_phasor(vis, delay_m, freq_hz):
    """(row, chan, corr) ``vis`` times ``exp(+2 pi i delay_m f / c)`` per row and channel,
    in ``vis``'s precision (the phase computed in float64)."""
    wavenumber = (2.0 * np.pi / SPEED_OF_LIGHT_M_S) * np.asarray(freq_hz, dtype=float)
    out = np.array(vis, copy=True)
    _times_phasor(out, np.ascontiguousarray(delay_m, dtype=float), wavenumber)
    return out


@numba.njit(cache=True, nogil=True)
def _times_phasor(vis, delay_m, wavenumber):
    for r in range(vis.shape[0]):
        if delay_m[r] == 0.0:
            continue
        for c in range(vis.shape[1]):
            phase = delay_m[r] * wavenumber[c]
            phasor = complex(np.cos(phase), np.sin(phase))
            for p in range(vis.shape[2]):
                vis[r, c, p] = vis[r, c, p] * phasor


def power_law_flux(flux_ref_jy, ref_freq_hz, spectral_index, freq_hz):
    """S(nu) = S_ref (nu / nu_ref) ** alpha; inputs broadcast together."""
    return np.asarray(flux_ref_jy) * (np.asarray(freq_hz) / ref_freq_hz) ** np.asarray(
        spectral_index
    )
