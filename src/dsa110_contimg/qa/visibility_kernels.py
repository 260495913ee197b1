"""Pure kernels of the visibility QA pass: partial sums per chunk, metrics from their sum.

One fused pass over a chunk of rows of one SPW fills :class:`VisibilityPartials`
for every field; partials of different chunks add, so a whole MS reduces in a
single read. Shapes follow dask-ms: ``data``, ``model``, ``corrected`` (row,
chan, corr) complex; ``flag`` (row, chan, corr) bool; ``weight`` (row, corr)
float; ``ant1``, ``ant2``, ``field_id`` (row,) int; ``uvw`` (row, 3) metres.

A visibility is *used* when it is an unflagged cross-correlation with finite,
non-zero DATA and a positive, finite weight; MODEL (CORRECTED) metrics also
need a finite, non-zero MODEL (CORRECTED). Phase statistics are circular,
from weighted unit phasors; medians come from log-spaced histograms
(``kernels.RATIO_BINS`` bins of 0.005 dex).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba
import numpy as np

from dsa110_contimg.qa.kernels import (
    RATIO_BINS,
    RATIO_LOG10_RANGE,
    circular_std_deg,
    histogram_median,
)

PHASE_BINS = 72  # 5 degrees each, from -180 to 180
N_UV_BINS = 12

# Layout of VisibilityPartials.scalars (per field).
(
    N_TOTAL, N_FLAGGED, N_ZERO, N_NONFINITE, N_USED,
    DM_N, DM_W, DM_RE, DM_IM,
    CM_N, CM_W, CM_RE, CM_IM,
    C_FILLED,
    D_SPEC_VECTOR, D_SPEC_SCALAR, C_SPEC_VECTOR, C_SPEC_SCALAR,
) = range(18)  # fmt: skip
N_SCALARS = 18

# Layout of the last axis of VisibilityPartials.uv (per field, uv bin).
UV_N, UV_ABS_D, UV_ABS_C, UV_ABS_M, UV_DM_RE, UV_DM_IM, UV_CM_RE, UV_CM_IM = range(8)
N_UV_SUMS = 8

# Layout of the last axis of VisibilityPartials.antenna (per field, antenna).
ANT_DM_W, ANT_DM_RE, ANT_DM_IM, ANT_CM_W, ANT_CM_RE, ANT_CM_IM = range(6)
N_ANT_SUMS = 6


@dataclass
class VisibilityPartials:
    """Sums of one SPW that add across row chunks (``+``).

    scalars (field, N_SCALARS); ratio histograms (field, RATIO_BINS) of
    log10 |D|/|M|, |C|/|M| and |C|/|D|; phase histograms (field, PHASE_BINS)
    of arg(D conj M) and arg(C conj M); uv (field, N_UV_BINS, N_UV_SUMS);
    antenna (field, ant, N_ANT_SUMS); flag_map (ant, chan, 2) flagged and total
    counts of cross-correlations, each baseline counted for both antennas.
    """

    scalars: np.ndarray
    hist_data_model: np.ndarray
    hist_corrected_model: np.ndarray
    hist_corrected_data: np.ndarray
    phase_hist_data_model: np.ndarray
    phase_hist_corrected_model: np.ndarray
    uv: np.ndarray
    antenna: np.ndarray
    flag_map: np.ndarray

    @classmethod
    def zeros(cls, n_field: int, n_ant: int, n_chan: int) -> VisibilityPartials:
        return cls(
            scalars=np.zeros((n_field, N_SCALARS)),
            hist_data_model=np.zeros((n_field, RATIO_BINS)),
            hist_corrected_model=np.zeros((n_field, RATIO_BINS)),
            hist_corrected_data=np.zeros((n_field, RATIO_BINS)),
            phase_hist_data_model=np.zeros((n_field, PHASE_BINS)),
            phase_hist_corrected_model=np.zeros((n_field, PHASE_BINS)),
            uv=np.zeros((n_field, N_UV_BINS, N_UV_SUMS)),
            antenna=np.zeros((n_field, n_ant, N_ANT_SUMS)),
            flag_map=np.zeros((n_ant, n_chan, 2)),
        )

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, f.name) for f in fields(self)]

    def __add__(self, other: VisibilityPartials) -> VisibilityPartials:
        pairs = zip(self.arrays(), other.arrays(), strict=True)
        return VisibilityPartials(*(a + b for a, b in pairs))

    def select(self, field_indices) -> VisibilityPartials:
        """The sums of the given fields only, summed over them (field axis kept, length 1)."""
        idx = list(field_indices)
        summed = [a[idx].sum(axis=0, keepdims=True) for a in self.arrays()[:-1]]
        return VisibilityPartials(*summed, self.flag_map)


@numba.njit(nogil=True, cache=True)
def _log_bin(log10_ratio, lo, scale, n_bins):
    position = (log10_ratio - lo) * scale
    k = int(position) if position > 0 else 0
    return min(k, n_bins - 1)


@numba.njit(nogil=True, cache=True)
def _visibility_sums(
    data, model, corrected, has_model, has_corrected, flag, weight, ant1, ant2, field_index,
    uvw, uv_max_m, lo, scale, n_bins,
    scalars, hist_dm, hist_cm, hist_cd, phase_dm, phase_cm, uv, antenna, flag_map,
):  # fmt: skip
    n_row, n_chan, n_corr = data.shape
    n_uv = uv.shape[1]
    n_phase = phase_dm.shape[1]
    phase_scale = n_phase / (2.0 * np.pi)
    for r in range(n_row):
        a1, a2 = ant1[r], ant2[r]
        f = field_index[r]
        if a1 == a2 or f < 0:
            continue
        uvdist = np.sqrt(uvw[r, 0] ** 2 + uvw[r, 1] ** 2)
        b = min(int(uvdist / uv_max_m * n_uv), n_uv - 1)
        for p in range(n_corr):
            w = weight[r, p]
            weight_ok = w > 0.0 and w < np.inf
            d_vec_re = 0.0
            d_vec_im = 0.0
            d_scalar = 0.0
            c_vec_re = 0.0
            c_vec_im = 0.0
            c_scalar = 0.0
            for c in range(n_chan):
                scalars[f, N_TOTAL] += 1.0
                flag_map[a1, c, 1] += 1.0
                flag_map[a2, c, 1] += 1.0
                if flag[r, c, p]:
                    scalars[f, N_FLAGGED] += 1.0
                    flag_map[a1, c, 0] += 1.0
                    flag_map[a2, c, 0] += 1.0
                    continue
                d = data[r, c, p]
                dr, di = d.real, d.imag
                d_power = dr * dr + di * di
                if not (np.isfinite(dr) and np.isfinite(di)):
                    scalars[f, N_NONFINITE] += 1.0
                    continue
                if d_power == 0.0:
                    scalars[f, N_ZERO] += 1.0
                    continue
                if not weight_ok:
                    continue
                scalars[f, N_USED] += 1.0
                d_abs = np.sqrt(d_power)
                d_vec_re += dr
                d_vec_im += di
                d_scalar += d_abs
                uv[f, b, UV_N] += 1.0
                uv[f, b, UV_ABS_D] += d_abs
                c_ok = False
                if has_corrected:
                    cv = corrected[r, c, p]
                    cr, ci = cv.real, cv.imag
                    c_power = cr * cr + ci * ci
                    c_ok = np.isfinite(c_power) and c_power > 0.0
                    if c_ok:
                        c_abs = np.sqrt(c_power)
                        scalars[f, C_FILLED] += 1.0
                        c_vec_re += cr
                        c_vec_im += ci
                        c_scalar += c_abs
                        uv[f, b, UV_ABS_C] += c_abs
                        hist_cd[f, _log_bin(np.log10(c_abs / d_abs), lo, scale, n_bins)] += 1.0
                if not has_model:
                    continue
                m = model[r, c, p]
                mr, mi = m.real, m.imag
                m_power = mr * mr + mi * mi
                if not (np.isfinite(m_power) and m_power > 0.0):
                    continue
                m_abs = np.sqrt(m_power)
                uv[f, b, UV_ABS_M] += m_abs
                # D conj(M) / |D M|: the unit phasor of the phase difference
                xr = (dr * mr + di * mi) / (d_abs * m_abs)
                xi = (di * mr - dr * mi) / (d_abs * m_abs)
                scalars[f, DM_N] += 1.0
                scalars[f, DM_W] += w
                scalars[f, DM_RE] += w * xr
                scalars[f, DM_IM] += w * xi
                uv[f, b, UV_DM_RE] += xr
                uv[f, b, UV_DM_IM] += xi
                antenna[f, a1, ANT_DM_W] += w
                antenna[f, a1, ANT_DM_RE] += w * xr
                antenna[f, a1, ANT_DM_IM] += w * xi
                antenna[f, a2, ANT_DM_W] += w
                antenna[f, a2, ANT_DM_RE] += w * xr
                antenna[f, a2, ANT_DM_IM] -= w * xi
                hist_dm[f, _log_bin(np.log10(d_abs / m_abs), lo, scale, n_bins)] += 1.0
                k = int((np.arctan2(xi, xr) + np.pi) * phase_scale)
                phase_dm[f, min(max(k, 0), n_phase - 1)] += 1.0
                if c_ok:
                    yr = (cr * mr + ci * mi) / (c_abs * m_abs)
                    yi = (ci * mr - cr * mi) / (c_abs * m_abs)
                    scalars[f, CM_N] += 1.0
                    scalars[f, CM_W] += w
                    scalars[f, CM_RE] += w * yr
                    scalars[f, CM_IM] += w * yi
                    uv[f, b, UV_CM_RE] += yr
                    uv[f, b, UV_CM_IM] += yi
                    antenna[f, a1, ANT_CM_W] += w
                    antenna[f, a1, ANT_CM_RE] += w * yr
                    antenna[f, a1, ANT_CM_IM] += w * yi
                    antenna[f, a2, ANT_CM_W] += w
                    antenna[f, a2, ANT_CM_RE] += w * yr
                    antenna[f, a2, ANT_CM_IM] -= w * yi
                    hist_cm[f, _log_bin(np.log10(c_abs / m_abs), lo, scale, n_bins)] += 1.0
                    k = int((np.arctan2(yi, yr) + np.pi) * phase_scale)
                    phase_cm[f, min(max(k, 0), n_phase - 1)] += 1.0
            scalars[f, D_SPEC_VECTOR] += np.sqrt(d_vec_re**2 + d_vec_im**2)
            scalars[f, D_SPEC_SCALAR] += d_scalar
            scalars[f, C_SPEC_VECTOR] += np.sqrt(c_vec_re**2 + c_vec_im**2)
            scalars[f, C_SPEC_SCALAR] += c_scalar


def visibility_partials(
    data, model, corrected, flag, weight, ant1, ant2, field_id, uvw,
    n_field: int, n_ant: int, uv_max_m: float,
) -> VisibilityPartials:  # fmt: skip
    """Partial sums of one SPW's row chunk; ``model``/``corrected`` may be None (absent).

    ``field_id`` values outside ``[0, n_field)`` are skipped; ``uv_max_m``
    sets the uv-distance bins (``N_UV_BINS`` equal bins up to it).
    """
    n_row, n_chan, n_corr = np.shape(data)
    out = VisibilityPartials.zeros(n_field, n_ant, n_chan)
    field_id = np.asarray(field_id, np.int64)
    field_index = np.where((field_id >= 0) & (field_id < n_field), field_id, -1)
    empty = np.zeros((0, 0, 0), np.complex64)
    lo, hi = RATIO_LOG10_RANGE
    _visibility_sums(
        np.ascontiguousarray(data, np.complex64),
        empty if model is None else np.ascontiguousarray(model, np.complex64),
        empty if corrected is None else np.ascontiguousarray(corrected, np.complex64),
        model is not None,
        corrected is not None,
        np.ascontiguousarray(flag, np.bool_),
        np.ascontiguousarray(weight, np.float32),
        np.ascontiguousarray(ant1, np.int64),
        np.ascontiguousarray(ant2, np.int64),
        field_index,
        np.ascontiguousarray(uvw, np.float64),
        float(uv_max_m),
        lo,
        RATIO_BINS / (hi - lo),
        RATIO_BINS,
        *out.arrays(),
    )
    return out


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _scatter(sum_w, re, im) -> float:
    if not sum_w > 0:
        return float("nan")
    return circular_std_deg(np.hypot(re, im) / sum_w)


def finalise_visibility_metrics(partials: VisibilityPartials, field: int = 0) -> dict:
    """Metrics of one field row of ``partials`` (NaN where nothing was usable).

    Fractions: ``flagged_fraction`` of all cross-correlation visibilities;
    ``zero_fraction`` and ``nonfinite_fraction`` of the unflagged ones;
    ``corrected_filled_fraction`` of the used ones. Spectral coherence is
    ``sum |sum_chan V| / sum sum_chan |V|`` over (row, corr): 1 for a
    visibility whose phase is flat across the SPW.
    """
    s = partials.scalars[field]
    unflagged = s[N_TOTAL] - s[N_FLAGGED]
    return {
        "n_visibilities": int(s[N_TOTAL]),
        "n_used": int(s[N_USED]),
        "flagged_fraction": _ratio(s[N_FLAGGED], s[N_TOTAL]),
        "zero_fraction": _ratio(s[N_ZERO], unflagged),
        "nonfinite_fraction": _ratio(s[N_NONFINITE], unflagged),
        "data_model_phase_scatter_deg": _scatter(s[DM_W], s[DM_RE], s[DM_IM]),
        "corrected_model_phase_scatter_deg": _scatter(s[CM_W], s[CM_RE], s[CM_IM]),
        "median_data_model_amp_ratio": histogram_median(partials.hist_data_model[field]),
        "median_corrected_model_amp_ratio": histogram_median(partials.hist_corrected_model[field]),
        "median_corrected_data_amp_ratio": histogram_median(partials.hist_corrected_data[field]),
        "corrected_filled_fraction": _ratio(s[C_FILLED], s[N_USED]),
        "data_spectral_coherence": _ratio(s[D_SPEC_VECTOR], s[D_SPEC_SCALAR]),
        "corrected_spectral_coherence": _ratio(s[C_SPEC_VECTOR], s[C_SPEC_SCALAR]),
        "n_model": int(s[DM_N]),
        "n_corrected_model": int(s[CM_N]),
    }


def uv_profile(partials: VisibilityPartials, uv_max_m: float, field: int = 0) -> dict:
    """Per uv-distance bin: amplitude ratios and phase coherence of DATA and CORRECTED vs MODEL.

    ``*_coherence`` is the mean resultant length of the phase-difference
    phasors in the bin (1: no decorrelation); ``mean_abs_*`` are scalar mean
    amplitudes (Jy). NaN where a bin holds nothing.
    """
    uv = partials.uv[field]
    n = uv[:, UV_N]
    with np.errstate(invalid="ignore", divide="ignore"):
        n_model = np.where(uv[:, UV_ABS_M] > 0, n, 0)
        return {
            "uv_centre_m": ((np.arange(N_UV_BINS) + 0.5) * uv_max_m / N_UV_BINS).tolist(),
            "n": n.tolist(),
            "mean_abs_data": np.where(n > 0, uv[:, UV_ABS_D] / n, np.nan).tolist(),
            "mean_abs_corrected": np.where(n > 0, uv[:, UV_ABS_C] / n, np.nan).tolist(),
            "data_model_amp_ratio": _nan_ratio(uv[:, UV_ABS_D], uv[:, UV_ABS_M]).tolist(),
            "corrected_model_amp_ratio": _nan_ratio(uv[:, UV_ABS_C], uv[:, UV_ABS_M]).tolist(),
            "data_model_coherence": _nan_ratio(
                np.hypot(uv[:, UV_DM_RE], uv[:, UV_DM_IM]), n_model
            ).tolist(),  # fmt: skip
            "corrected_model_coherence": _nan_ratio(
                np.hypot(uv[:, UV_CM_RE], uv[:, UV_CM_IM]), n_model
            ).tolist(),  # fmt: skip
        }


def _nan_ratio(numerator, denominator) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def decorrelation(profile: dict, key: str) -> float:
    """Coherence on the outer third of the used uv bins over the inner third (1: none)."""
    coherence = np.asarray(profile[key], float)
    used = np.flatnonzero(np.isfinite(coherence) & (np.asarray(profile["n"]) > 0))
    if len(used) < 3:
        return float("nan")
    third = max(len(used) // 3, 1)
    inner, outer = coherence[used[:third]], coherence[used[-third:]]
    weights = np.asarray(profile["n"], float)
    inner_mean = np.average(inner, weights=weights[used[:third]])
    outer_mean = np.average(outer, weights=weights[used[-third:]])
    return float(outer_mean / inner_mean) if inner_mean > 0 else float("nan")


def antenna_phase_scatter_deg(partials: VisibilityPartials, which: str, field: int = 0):
    """(ant,) circular phase scatter (deg) of the baselines of each antenna; NaN if unused."""
    a = partials.antenna[field]
    w, re, im = (
        (a[:, ANT_DM_W], a[:, ANT_DM_RE], a[:, ANT_DM_IM])
        if which == "data"
        else (a[:, ANT_CM_W], a[:, ANT_CM_RE], a[:, ANT_CM_IM])
    )
    return np.array([_scatter(*v) for v in zip(w, re, im, strict=True)])


def phase_histogram_edges_deg() -> np.ndarray:
    return np.linspace(-180.0, 180.0, PHASE_BINS + 1)
