"""Pure numpy kernels for visibility-domain metrics, summable across chunks.

Every metric is built from *partial sums* that a chunk of rows produces on
its own and that add across chunks, so a whole MS is reduced in one pass:
circular phase statistics from weighted sums of unit phasors, medians from a
fixed log-spaced histogram, fractions from counts.

Array shapes: ``data``, ``model`` (row, chan, corr) complex; ``flag`` (row,
chan, corr) bool; ``weight`` (row, corr) float; ``cross`` (row,) bool.
"""

from __future__ import annotations

import numba
import numpy as np

RATIO_LOG10_RANGE = (-4.0, 4.0)
RATIO_BINS = 1600  # 0.005 dex (1.2 %) per bin; the median interpolates within a bin

# Layout of the partial-sum vector of phase_alignment_partials.
_SUM_W, _MODEL_RE, _MODEL_IM, _DIFF_RE, _DIFF_IM, _N_FLAGGED, _N_TOTAL, _N_USED = range(8)
_FLOOR_SUM, _NOISE_W = 8, 9  # thermal floor of the DATA-MODEL phasor (see floor_phasor)
_N_SCALARS = 10
PARTIALS_LENGTH = _N_SCALARS + RATIO_BINS
USED_INDEX, TOTAL_INDEX = _N_USED, _N_TOTAL  # counts readers may look at directly


@numba.njit(nogil=True, cache=True)
def _i0e_plus_i1e(x):
    """exp(-x) (I0(x) + I1(x)) for x >= 0 (Abramowitz & Stegun 9.8.1-9.8.4, error < 1e-7)."""
    if x < 3.75:
        t = (x / 3.75) ** 2
        i0 = 1.0 + t * (3.5156229 + t * (3.0899424 + t * (1.2067492 + t * (
            0.2659732 + t * (0.0360768 + t * 0.0045813)))))  # fmt: skip
        i1 = x * (0.5 + t * (0.87890594 + t * (0.51498869 + t * (0.15084934 + t * (
            0.02658733 + t * (0.00301532 + t * 0.00032411))))))  # fmt: skip
        return (i0 + i1) * np.exp(-x)
    t = 3.75 / x
    i0 = 0.39894228 + t * (0.01328592 + t * (0.00225319 + t * (-0.00157565 + t * (
        0.00916281 + t * (-0.02057706 + t * (0.02635537 + t * (-0.01647633
        + t * 0.00392377)))))))  # fmt: skip
    i1 = 0.39894228 + t * (-0.03988024 + t * (-0.00362018 + t * (0.00163801 + t * (
        -0.01031555 + t * (0.02282967 + t * (-0.02895312 + t * (0.01787654
        - t * 0.00420059)))))))  # fmt: skip
    return (i0 + i1) / np.sqrt(x)


@numba.njit(nogil=True, cache=True)
def thermal_phasor_length(nu):
    """E[cos phi] of the phase of A + noise, nu = A^2 / (2 sigma^2) (sigma per component)."""
    if not nu > 0.0:
        return 0.0
    if nu > 1e6:
        return 1.0 - 0.25 / nu
    return min(0.5 * np.sqrt(np.pi * nu) * _i0e_plus_i1e(0.5 * nu), 1.0)


@numba.njit(nogil=True, cache=True)
def floor_phasor(diff_sum, n_diff, power_sum, n_power):
    """Thermal phasor length of one (row, corr) from its channel differences and power."""
    if n_diff < 1 or n_power < 2:
        return -1.0  # not measurable
    sigma2 = diff_sum / (4.0 * n_diff)
    power = power_sum / n_power
    if sigma2 <= 1e-12 * power:
        return 1.0  # noise-free
    signal2 = power - 2.0 * sigma2
    if signal2 <= 0.0:
        return 0.0
    return thermal_phasor_length(signal2 / (2.0 * sigma2))


@numba.njit(nogil=True, cache=True)
def _alignment_sums(data, model, flag, weight, cross, noise_rows, out, lo, scale, n_bins):
    """Fused single pass over (row, chan, corr); adds into ``out`` (see layout above).

    Per (row, corr) the noise comes from adjacent-channel differences of
    DATA with MODEL's phase taken out, for the thermal floor (floor_phasor).
    """
    n_row, n_chan, n_corr = data.shape
    prev_re = np.zeros(n_corr)
    prev_im = np.zeros(n_corr)
    prev_ok = np.zeros(n_corr, np.bool_)
    noise = np.zeros((n_corr, 5))  # diff sum, n diff, power sum, n power, weight sum
    for r in range(n_row):
        if not cross[r]:
            continue
        sampled = noise_rows[r]
        prev_ok[:] = False
        noise[:] = 0.0
        for c in range(n_chan):
            for p in range(n_corr):
                out[_N_TOTAL] += 1.0
                if flag[r, c, p]:
                    out[_N_FLAGGED] += 1.0
                    prev_ok[p] = False
                    continue
                w = weight[r, p]
                if not (w > 0.0 and w < np.inf):
                    prev_ok[p] = False
                    continue
                d = data[r, c, p]
                m = model[r, c, p]
                # float64: uncalibrated amplitudes (1e32) overflow float32 when squared
                dr, di = np.float64(d.real), np.float64(d.imag)
                mr, mi = np.float64(m.real), np.float64(m.imag)
                data_power = dr * dr + di * di
                model_power = mr * mr + mi * mi
                both = data_power * model_power
                if not (both > 0.0 and both < np.inf):
                    prev_ok[p] = False
                    continue
                out[_N_USED] += 1.0
                out[_SUM_W] += w
                inv_model = 1.0 / np.sqrt(model_power)
                w_over_model = w * inv_model
                out[_MODEL_RE] += w_over_model * mr
                out[_MODEL_IM] += w_over_model * mi
                w_over_both = w / np.sqrt(both)
                out[_DIFF_RE] += w_over_both * (dr * mr + di * mi)
                out[_DIFF_IM] += w_over_both * (di * mr - dr * mi)
                # log10 |D|/|M| = log10(|D|^2 / |M|^2) / 2: no square root needed.
                position = (0.5 * np.log10(data_power / model_power) - lo) * scale
                k = int(position) if position > 0 else 0
                out[_N_SCALARS + min(k, n_bins - 1)] += 1.0
                if not sampled:
                    continue
                vr = (dr * mr + di * mi) * inv_model
                vi = (di * mr - dr * mi) * inv_model
                if prev_ok[p]:
                    noise[p, 0] += (vr - prev_re[p]) ** 2 + (vi - prev_im[p]) ** 2
                    noise[p, 1] += 1.0
                prev_re[p], prev_im[p], prev_ok[p] = vr, vi, True
                noise[p, 2] += data_power
                noise[p, 3] += 1.0
                noise[p, 4] += w
        for p in range(n_corr if sampled else 0):
            if noise[p, 4] > 0.0:
                phasor = floor_phasor(noise[p, 0], noise[p, 1], noise[p, 2], noise[p, 3])
                if phasor >= 0.0:
                    out[_FLOOR_SUM] += noise[p, 4] * phasor
                    out[_NOISE_W] += noise[p, 4]


def phase_alignment_partials(data, model, flag, weight, cross, noise_rows=None):
    """Partial sums for model phase scatter, DATA-MODEL phase scatter and |DATA|/|MODEL|.

    A visibility counts when it is an unflagged cross-correlation with finite,
    non-zero DATA and MODEL and a positive, finite weight. Phase sums are
    weighted unit phasors: sum w M/|M| and sum w D conj(M) / |D M|. Returns a
    float64 vector of length ``PARTIALS_LENGTH``; add vectors of different
    chunks, then call :func:`finalise_phase_alignment`. One fused pass (numba),
    accumulated in float64. The thermal floor is estimated on ``noise_rows``
    (bool, (row,); default every row): a sample of baselines is enough.
    """
    out = np.zeros(PARTIALS_LENGTH)
    noise_rows = np.ones(len(cross), np.bool_) if noise_rows is None else noise_rows
    lo, hi = RATIO_LOG10_RANGE
    _alignment_sums(
        np.ascontiguousarray(data, np.complex64),
        np.ascontiguousarray(model, np.complex64),
        np.ascontiguousarray(flag, np.bool_),
        np.ascontiguousarray(weight, np.float32),
        np.ascontiguousarray(cross, np.bool_),
        np.ascontiguousarray(noise_rows, np.bool_),
        out,
        lo,
        RATIO_BINS / (hi - lo),
        RATIO_BINS,
    )
    return out


def log_histogram(values, bins=RATIO_BINS, log10_range=RATIO_LOG10_RANGE):
    """Counts of ``values`` (> 0) in log-spaced bins; out-of-range values go to the end bins."""
    return log_histogram_of_log10(np.log10(np.asarray(values, np.float32)), bins, log10_range)


def log_histogram_of_log10(log10_values, bins=RATIO_BINS, log10_range=RATIO_LOG10_RANGE):
    """As :func:`log_histogram`, given the base-10 logarithms of the values."""
    lo, hi = log10_range
    position = (log10_values - np.float32(lo)) * np.float32(bins / (hi - lo))
    index = np.clip(position, 0, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins).astype(np.float64)


def histogram_median(counts, log10_range=RATIO_LOG10_RANGE):
    """Median of the values behind a :func:`log_histogram`, interpolated in log space."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    lo, hi = log10_range
    width = (hi - lo) / len(counts)
    cumulative = np.cumsum(counts)
    k = int(np.searchsorted(cumulative, total / 2.0))
    before = cumulative[k - 1] if k > 0 else 0.0
    fraction = (total / 2.0 - before) / counts[k]
    return float(10 ** (lo + (k + fraction) * width))


def circular_std_deg(resultant_length):
    """Circular standard deviation sqrt(-2 ln R) in degrees; R is the mean resultant length."""
    r = np.clip(resultant_length, 1e-300, 1.0)
    return float(np.degrees(np.sqrt(max(-2.0 * np.log(r), 0.0)))) + 0.0  # never -0.0


def excess_scatter_deg(measured_deg: float, floor_deg: float) -> float:
    """The phase scatter beyond thermal noise: phasor lengths divide (R = R_floor R_excess)."""
    if not np.isfinite(measured_deg):
        return float("nan")
    if not np.isfinite(floor_deg):
        return measured_deg
    measured_r = np.exp(-0.5 * np.radians(measured_deg) ** 2)
    floor_r = np.exp(-0.5 * np.radians(floor_deg) ** 2)
    return circular_std_deg(min(measured_r / floor_r, 1.0)) if floor_r > 0 else float("nan")


def finalise_phase_alignment(partials) -> dict:
    """Metrics from summed partials (NaN where no visibility was usable)."""
    sum_w = partials[_SUM_W]
    n_total = partials[_N_TOTAL]
    if sum_w > 0:
        model_r = np.hypot(partials[_MODEL_RE], partials[_MODEL_IM]) / sum_w
        diff_r = np.hypot(partials[_DIFF_RE], partials[_DIFF_IM]) / sum_w
        model_scatter, diff_scatter = circular_std_deg(model_r), circular_std_deg(diff_r)
    else:
        model_scatter = diff_scatter = float("nan")
    floor = (
        circular_std_deg(partials[_FLOOR_SUM] / partials[_NOISE_W])
        if partials[_NOISE_W] > 0 else float("nan")
    )  # fmt: skip
    return {
        "model_phase_scatter_deg": model_scatter,
        "data_model_phase_scatter_deg": diff_scatter,
        "data_model_phase_floor_deg": floor,
        "median_amp_ratio": histogram_median(partials[_N_SCALARS:]),
        "flagged_fraction": float(partials[_N_FLAGGED] / n_total) if n_total else float("nan"),
        "n_used": int(partials[_N_USED]),
    }


@numba.njit(nogil=True, cache=True)
def _coherence_sums(model, predicted, cross, corr_weights, out):
    n_row, n_chan, n_corr = model.shape
    for r in range(n_row):
        if not cross[r]:
            continue
        for c in range(n_chan):
            p = predicted[r, c]
            if not (np.isfinite(p.real) and np.isfinite(p.imag)):
                continue
            for k in range(n_corr):
                m = model[r, c, k]
                if not (np.isfinite(m.real) and np.isfinite(m.imag)):
                    continue
                w = corr_weights[k]
                out[c, 0] += w * (m.real * p.real + m.imag * p.imag)
                out[c, 1] += m.real * m.real + m.imag * m.imag
                out[c, 2] += w * w * (p.real * p.real + p.imag * p.imag)


def model_coherence_partials(model, predicted, cross, corr_weights=None):
    """Per-channel sums (chan, 3): Re sum M conj(P), sum |M|^2, sum |P|^2 over cross rows.

    ``model`` is (row, chan, corr); ``predicted`` (row, chan), the Stokes I
    visibility, times ``corr_weights`` (corr,) in each correlation (default 1:
    every correlation; as written, 1 in the parallel hands and 0 in the cross-hands).
    """
    n_corr = model.shape[2]
    weights = np.ones(n_corr) if corr_weights is None else np.asarray(corr_weights, float)
    out = np.zeros((model.shape[1], 3))
    _coherence_sums(
        np.ascontiguousarray(model, np.complex64),
        np.ascontiguousarray(predicted, np.complex128),
        np.ascontiguousarray(cross, np.bool_),
        np.ascontiguousarray(weights, np.float64),
        out,
    )
    return out


def finalise_model_coherence(partials) -> float:
    """Mean over channels of Re<M, P> / (|M| |P|): 1 when MODEL matches the prediction."""
    cross_sum, m2, p2 = partials[:, 0], partials[:, 1], partials[:, 2]
    ok = (m2 > 0) & (p2 > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(cross_sum[ok] / np.sqrt(m2[ok] * p2[ok])))
