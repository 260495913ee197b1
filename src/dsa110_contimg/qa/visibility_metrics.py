"""Metrics from the summed partials of the visibility QA pass (pure numpy).

:mod:`~dsa110_contimg.qa.visibility_kernels` fills the partial sums chunk by
chunk; this module turns their sum into figures: fractions, phase scatters
with their thermal floors, amplitude ratios, the uv profile, per-antenna
phase scatter.
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.qa.kernels import circular_std_deg
from dsa110_contimg.qa.visibility_kernels import (
    _LO_BITS,
    _SHIFT,
    ANT_CM_IM,
    ANT_CM_RE,
    ANT_CM_W,
    ANT_DM_IM,
    ANT_DM_RE,
    ANT_DM_W,
    C_FILLED,
    C_SPEC_SCALAR,
    C_SPEC_VECTOR,
    CM_FLOOR,
    CM_IM,
    CM_N,
    CM_NOISE_W,
    CM_RE,
    CM_W,
    CMV_IM,
    CMV_M2,
    CMV_RE,
    D_SPEC_SCALAR,
    D_SPEC_VECTOR,
    DM_FLOOR,
    DM_IM,
    DM_N,
    DM_NOISE_W,
    DM_RE,
    DM_W,
    DMV_IM,
    DMV_M2,
    DMV_RE,
    N_FLAGGED,
    N_NONFINITE,
    N_TOTAL,
    N_USED,
    N_UV_BINS,
    N_ZERO,
    PHASE_BINS,
    RATIO_BINS,
    UV_ABS_C,
    UV_ABS_D,
    UV_ABS_M,
    UV_CM_IM,
    UV_CM_RE,
    UV_DM_IM,
    UV_DM_RE,
    UV_N,
    VisibilityPartials,
)


def ratio_bin_edges() -> np.ndarray:
    """(RATIO_BINS + 1,) lower edges of the ratio bins, then the upper edge of the last."""
    bits = (np.arange(RATIO_BINS + 1, dtype=np.int64) + _LO_BITS) << _SHIFT
    return bits.astype(np.int32).view(np.float32).astype(np.float64)


def ratio_bins_of(values) -> np.ndarray:
    """The bins of positive ``values`` (numpy; the kernel's rule, vectorized)."""
    bits = np.asarray(values, np.float32).view(np.int32).astype(np.int64)
    return np.clip((bits >> _SHIFT) - _LO_BITS, 0, RATIO_BINS - 1)


def ratio_histogram_median(counts) -> float:
    """Median of the ratios behind ``counts``, interpolated linearly inside its bin."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    cumulative = np.cumsum(counts)
    k = int(np.searchsorted(cumulative, total / 2.0))
    before = cumulative[k - 1] if k > 0 else 0.0
    fraction = (total / 2.0 - before) / counts[k]
    edges = ratio_bin_edges()
    return float(edges[k] + fraction * (edges[k + 1] - edges[k]))


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
        "median_data_model_amp_ratio": ratio_histogram_median(partials.hist_data_model[field]),
        "median_corrected_model_amp_ratio": ratio_histogram_median(
            partials.hist_corrected_model[field]
        ),
        "median_corrected_data_amp_ratio": ratio_histogram_median(
            partials.hist_corrected_data[field]
        ),
        "corrected_filled_fraction": _ratio(s[C_FILLED], s[N_USED]),
        "data_spectral_coherence": _ratio(s[D_SPEC_VECTOR], s[D_SPEC_SCALAR]),
        "corrected_spectral_coherence": _ratio(s[C_SPEC_VECTOR], s[C_SPEC_SCALAR]),
        "n_model": int(s[DM_N]),
        "n_corrected_model": int(s[CM_N]),
        "data_model_phase_floor_deg": _floor_deg(s[DM_FLOOR], s[DM_NOISE_W]),
        "corrected_model_phase_floor_deg": _floor_deg(s[CM_FLOOR], s[CM_NOISE_W]),
        "vector_data_model_amp_ratio": _ratio(np.hypot(s[DMV_RE], s[DMV_IM]), s[DMV_M2]),
        "vector_corrected_model_amp_ratio": _ratio(np.hypot(s[CMV_RE], s[CMV_IM]), s[CMV_M2]),
    }


def _floor_deg(floor_sum, noise_w) -> float:
    """Phase scatter (deg) thermal noise alone would give, where the noise was measurable."""
    if not noise_w > 0:
        return float("nan")
    return circular_std_deg(floor_sum / noise_w)


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
