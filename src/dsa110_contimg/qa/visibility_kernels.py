"""Pure kernels of the visibility QA pass: partial sums per chunk, metrics from their sum.

One fused pass over a chunk of rows of one SPW fills :class:`VisibilityPartials`
for every field; partials of different chunks add, so a whole MS reduces in a
single read. Shapes follow dask-ms: ``data``, ``model``, ``corrected`` (row,
chan, corr) complex; ``flag`` (row, chan, corr) bool; ``weight`` (row, corr)
float; ``ant1``, ``ant2``, ``field_id`` (row,) int; ``uvw`` (row, 3) metres.

A visibility is *used* when it is an unflagged cross-correlation with finite,
non-zero DATA and a positive, finite weight; MODEL (CORRECTED) metrics also
need a finite, non-zero MODEL (CORRECTED). Phase statistics are circular,
from weighted unit phasors; medians come from histograms on a
pseudo-logarithmic scale (bins under 0.8 % wide, see ``RATIO_MANTISSA_BITS``).

Thermal noise. On the baselines the phase histograms sample (one in
``PHASE_HISTOGRAM_BASELINE_STRIDE``: a statistical figure needs no more), per
(row, correlation) the noise per real/imaginary part is estimated from the
data themselves, sigma^2 = <|V_c - V_(c-1)|^2> / 4 over
adjacent channels after the model's phase is taken out (so a source off the
phase centre adds no fringe), and the signal power A^2 = <|V|^2> - 2 sigma^2.
Thermal noise alone leaves a phase-difference phasor of mean length
E[cos phi] = sqrt(pi nu)/2 e^(-nu/2) (I0(nu/2) + I1(nu/2)), nu = A^2 / (2 sigma^2)
(the Rice phase distribution); summed with the same weights as the measured
phasors this gives each phase scatter's thermal floor. Amplitude ratios are
also given as the noise-unbiased vector ratio |sum w V conj(M)| / sum w |M|^2.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba
import numpy as np

from dsa110_contimg.qa.kernels import floor_phasor

PHASE_BINS = 72  # 5 degrees each, from -180 to 180
# The phase histograms only draw the report's before/after plot; binning a
# phase costs as much as the rest of the pass, so they sample one baseline in
# PHASE_HISTOGRAM_BASELINE_STRIDE (chosen from the antenna pair, so the sample
# does not depend on how rows are chunked).
PHASE_HISTOGRAM_BASELINE_STRIDE = 8

# Amplitude-ratio histograms bin the IEEE-754 bits of the float32 ratio: the
# exponent and the top RATIO_MANTISSA_BITS mantissa bits, a monotone
# piecewise-linear log2 scale (bins at most 2**-7 = 0.78 % wide) that costs no
# logarithm per visibility. Ratios outside RATIO_LIMITS go to the end bins.
RATIO_MANTISSA_BITS = 7
RATIO_LIMITS = (1e-4, 1e4)
_SHIFT = 23 - RATIO_MANTISSA_BITS
_LO_BITS = int(np.array([RATIO_LIMITS[0]], np.float32).view(np.int32)[0]) >> _SHIFT
_HI_BITS = int(np.array([RATIO_LIMITS[1]], np.float32).view(np.int32)[0]) >> _SHIFT
RATIO_BINS = _HI_BITS - _LO_BITS + 1
N_UV_BINS = 12

# Layout of VisibilityPartials.scalars (per field).
(
    N_TOTAL, N_FLAGGED, N_ZERO, N_NONFINITE, N_USED,
    DM_N, DM_W, DM_RE, DM_IM,
    CM_N, CM_W, CM_RE, CM_IM,
    C_FILLED,
    D_SPEC_VECTOR, D_SPEC_SCALAR, C_SPEC_VECTOR, C_SPEC_SCALAR,
    DM_FLOOR, CM_FLOOR, DM_NOISE_W, CM_NOISE_W,
    DMV_RE, DMV_IM, DMV_M2, CMV_RE, CMV_IM, CMV_M2,
) = range(28)  # fmt: skip
N_SCALARS = 28

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

    def plus_spw(self, other: VisibilityPartials) -> VisibilityPartials:
        """Add another SPW's sums; this SPW's flag map is kept (channels differ)."""
        pairs = zip(self.arrays()[:-1], other.arrays()[:-1], strict=True)
        return VisibilityPartials(*(a + b for a, b in pairs), self.flag_map)

    def select(self, field_indices) -> VisibilityPartials:
        """The sums of the given fields only, summed over them (field axis kept, length 1)."""
        idx = list(field_indices)
        summed = [a[idx].sum(axis=0, keepdims=True) for a in self.arrays()[:-1]]
        return VisibilityPartials(*summed, self.flag_map)


@numba.njit(nogil=True, cache=True)
def phase_sampled_baseline(ant1, ant2):
    """Whether baseline (ant1, ant2) feeds the phase histograms."""
    return (ant1 * 31 + ant2) % PHASE_HISTOGRAM_BASELINE_STRIDE == 0


@numba.njit(nogil=True, cache=True, inline="always")
def _phase_bin(y, x, n_bins):
    """Bin of atan2(y, x) among ``n_bins`` equal bins from -pi to pi.

    A minimax polynomial for atan on [0, 1] (error 1e-5 rad, far below a
    5-degree bin) with the octant folded by hand: several times cheaper than
    the library's atan2.
    """
    ax, ay = abs(x), abs(y)
    big, small = max(ax, ay), min(ax, ay)
    if big == 0.0:
        return n_bins // 2
    z = small / big
    z2 = z * z
    a = z * (0.99997726 + z2 * (-0.33262347 + z2 * (0.19354346 + z2 * (
        -0.11643287 + z2 * (0.05265332 + z2 * -0.01172120)))))  # fmt: skip
    if ay > ax:
        a = 0.5 * np.pi - a
    if x < 0.0:
        a = np.pi - a
    if y < 0.0:
        a = -a
    k = int((a + np.pi) * (n_bins / (2.0 * np.pi)))
    return min(max(k, 0), n_bins - 1)


@numba.njit(nogil=True, cache=True, inline="always")
def _ratio_bin(ratio, float_buffer, bits_buffer):
    """Histogram bin of a positive ratio from its float32 bits (see RATIO_MANTISSA_BITS)."""
    float_buffer[0] = ratio
    k = (bits_buffer[0] >> _SHIFT) - _LO_BITS
    return min(max(k, 0), RATIO_BINS - 1)


def noise_floor_baselines(ant1, ant2) -> np.ndarray:
    """(row,) bool: the baselines the phase histograms and thermal floors sample."""
    ant1, ant2 = np.asarray(ant1, np.int64), np.asarray(ant2, np.int64)
    return (ant1 * 31 + ant2) % PHASE_HISTOGRAM_BASELINE_STRIDE == 0


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def _visibility_sums(
    data, model, corrected, has_model, has_corrected, flag, weight, ant1, ant2, field_index,
    uvw, uv_max_m, float_buffer, bits_buffer,
    scalars, hist_dm, hist_cm, hist_cd, phase_dm, phase_cm, uv, antenna, flag_map,
):  # fmt: skip
    """One pass over (row, chan, corr); sums build up in row-local variables first."""
    n_row, n_chan, n_corr = data.shape
    n_uv = uv.shape[1]
    n_phase = phase_dm.shape[1]
    for r in range(n_row):
        a1, a2 = ant1[r], ant2[r]
        f = field_index[r]
        if a1 == a2 or f < 0:
            continue
        sample_phase = phase_sampled_baseline(a1, a2)
        uvdist = np.sqrt(uvw[r, 0] ** 2 + uvw[r, 1] ** 2)
        b = min(int(uvdist / uv_max_m * n_uv), n_uv - 1)
        n_flagged = n_nonfinite = n_zero = n_used = n_filled = 0.0
        abs_d = abs_c = abs_m = 0.0
        n_dm = w_dm = re_dm_w = im_dm_w = re_dm = im_dm = 0.0
        n_cm = w_cm = re_cm_w = im_cm_w = re_cm = im_cm = 0.0
        floor_dm = floor_cm = noise_dm_w = noise_cm_w = 0.0
        dmv_re = dmv_im = dmv_m2 = cmv_re = cmv_im = cmv_m2 = 0.0
        for p in range(n_corr):
            w = weight[r, p]
            weight_ok = w > 0.0 and w < np.inf
            d_vec_re = d_vec_im = d_scalar = 0.0
            c_vec_re = c_vec_im = c_scalar = 0.0
            corr_n_dm = corr_re_dm = corr_im_dm = 0.0
            corr_n_cm = corr_re_cm = corr_im_cm = 0.0
            # noise: model-derotated values of the previous channel, and sums
            prev_d_ok = prev_c_ok = False
            prev_dr = prev_di = prev_cr = prev_ci = 0.0
            d_diff = d_ndiff = d_pow = d_npow = 0.0
            c_diff = c_ndiff = c_pow = c_npow = 0.0
            corr_dmv_re = corr_dmv_im = corr_cmv_re = corr_cmv_im = corr_m2 = corr_cm2 = 0.0
            for c in range(n_chan):
                if flag[r, c, p]:
                    n_flagged += 1.0
                    flag_map[a1, c, 0] += 1.0
                    flag_map[a2, c, 0] += 1.0
                    prev_d_ok = prev_c_ok = False
                    continue
                d = data[r, c, p]
                # float64 arithmetic: uncalibrated amplitudes reach 1e32, whose square
                # overflows float32
                dr, di = np.float64(d.real), np.float64(d.imag)
                if not (np.isfinite(dr) and np.isfinite(di)):
                    n_nonfinite += 1.0
                    continue
                d_power = dr * dr + di * di
                if d_power == 0.0:
                    n_zero += 1.0
                    continue
                if not weight_ok:
                    continue
                n_used += 1.0
                d_abs = np.sqrt(d_power)
                inv_d = 1.0 / d_abs
                d_vec_re += dr
                d_vec_im += di
                d_scalar += d_abs
                c_ok = False
                if has_corrected:
                    cv = corrected[r, c, p]
                    cr, ci = np.float64(cv.real), np.float64(cv.imag)
                    c_power = cr * cr + ci * ci
                    c_ok = np.isfinite(c_power) and c_power > 0.0
                    if c_ok:
                        c_abs = np.sqrt(c_power)
                        inv_c = 1.0 / c_abs
                        n_filled += 1.0
                        c_vec_re += cr
                        c_vec_im += ci
                        c_scalar += c_abs
                        hist_cd[f, _ratio_bin(c_abs * inv_d, float_buffer, bits_buffer)] += 1.0
                if not has_model:
                    continue
                m = model[r, c, p]
                mr, mi = np.float64(m.real), np.float64(m.imag)
                m_power = mr * mr + mi * mi
                if not (np.isfinite(m_power) and m_power > 0.0):
                    prev_d_ok = prev_c_ok = False
                    continue
                m_abs = np.sqrt(m_power)
                inv_m = 1.0 / m_abs
                abs_m += m_abs
                # V conj(M): the vector ratio's numerator; over |M|, V with M's phase removed
                vr, vi = dr * mr + di * mi, di * mr - dr * mi
                corr_dmv_re += vr
                corr_dmv_im += vi
                corr_m2 += m_power
                if sample_phase:  # the noise floor, from the sampled baselines
                    vr *= inv_m
                    vi *= inv_m
                    if prev_d_ok:
                        d_diff += (vr - prev_dr) ** 2 + (vi - prev_di) ** 2
                        d_ndiff += 1.0
                    prev_dr, prev_di, prev_d_ok = vr, vi, True
                    d_pow += d_power
                    d_npow += 1.0
                if c_ok:
                    ur, ui = cr * mr + ci * mi, ci * mr - cr * mi
                    corr_cmv_re += ur
                    corr_cmv_im += ui
                    corr_cm2 += m_power
                    if sample_phase:
                        ur *= inv_m
                        ui *= inv_m
                        if prev_c_ok:
                            c_diff += (ur - prev_cr) ** 2 + (ui - prev_ci) ** 2
                            c_ndiff += 1.0
                        prev_cr, prev_ci, prev_c_ok = ur, ui, True
                        c_pow += c_power
                        c_npow += 1.0
                else:
                    prev_c_ok = False
                # D conj(M) / |D M|: the unit phasor of the phase difference
                scale = inv_d * inv_m
                xr = (dr * mr + di * mi) * scale
                xi = (di * mr - dr * mi) * scale
                corr_n_dm += 1.0
                corr_re_dm += xr
                corr_im_dm += xi
                hist_dm[f, _ratio_bin(d_abs * inv_m, float_buffer, bits_buffer)] += 1.0
                if sample_phase:
                    phase_dm[f, _phase_bin(xi, xr, n_phase)] += 1.0
                if c_ok:
                    scale = inv_c * inv_m
                    yr = (cr * mr + ci * mi) * scale
                    yi = (ci * mr - cr * mi) * scale
                    corr_n_cm += 1.0
                    corr_re_cm += yr
                    corr_im_cm += yi
                    hist_cm[f, _ratio_bin(c_abs * inv_m, float_buffer, bits_buffer)] += 1.0
                    if sample_phase:
                        phase_cm[f, _phase_bin(yi, yr, n_phase)] += 1.0
            abs_d += d_scalar
            abs_c += c_scalar
            scalars[f, D_SPEC_VECTOR] += np.sqrt(d_vec_re**2 + d_vec_im**2)
            scalars[f, D_SPEC_SCALAR] += d_scalar
            scalars[f, C_SPEC_VECTOR] += np.sqrt(c_vec_re**2 + c_vec_im**2)
            scalars[f, C_SPEC_SCALAR] += c_scalar
            # the weight is one per (row, corr): weighted sums are w times plain sums
            dmv_re += w * corr_dmv_re
            dmv_im += w * corr_dmv_im
            dmv_m2 += w * corr_m2
            cmv_re += w * corr_cmv_re
            cmv_im += w * corr_cmv_im
            cmv_m2 += w * corr_cm2
            if corr_n_dm > 0.0 and sample_phase:
                phasor = floor_phasor(d_diff, d_ndiff, d_pow, d_npow)
                if phasor >= 0.0:
                    noise_dm_w += w * corr_n_dm
                    floor_dm += w * corr_n_dm * phasor
            if corr_n_cm > 0.0 and sample_phase:
                phasor = floor_phasor(c_diff, c_ndiff, c_pow, c_npow)
                if phasor >= 0.0:
                    noise_cm_w += w * corr_n_cm
                    floor_cm += w * corr_n_cm * phasor
            n_dm += corr_n_dm
            w_dm += w * corr_n_dm
            re_dm += corr_re_dm
            im_dm += corr_im_dm
            re_dm_w += w * corr_re_dm
            im_dm_w += w * corr_im_dm
            n_cm += corr_n_cm
            w_cm += w * corr_n_cm
            re_cm += corr_re_cm
            im_cm += corr_im_cm
            re_cm_w += w * corr_re_cm
            im_cm_w += w * corr_im_cm
        scalars[f, N_TOTAL] += n_chan * n_corr
        scalars[f, N_FLAGGED] += n_flagged
        scalars[f, N_NONFINITE] += n_nonfinite
        scalars[f, N_ZERO] += n_zero
        scalars[f, N_USED] += n_used
        scalars[f, C_FILLED] += n_filled
        scalars[f, DM_N] += n_dm
        scalars[f, DM_W] += w_dm
        scalars[f, DM_RE] += re_dm_w
        scalars[f, DM_IM] += im_dm_w
        scalars[f, CM_N] += n_cm
        scalars[f, CM_W] += w_cm
        scalars[f, CM_RE] += re_cm_w
        scalars[f, CM_IM] += im_cm_w
        scalars[f, DM_FLOOR] += floor_dm
        scalars[f, CM_FLOOR] += floor_cm
        scalars[f, DM_NOISE_W] += noise_dm_w
        scalars[f, CM_NOISE_W] += noise_cm_w
        scalars[f, DMV_RE] += dmv_re
        scalars[f, DMV_IM] += dmv_im
        scalars[f, DMV_M2] += dmv_m2
        scalars[f, CMV_RE] += cmv_re
        scalars[f, CMV_IM] += cmv_im
        scalars[f, CMV_M2] += cmv_m2
        uv[f, b, UV_N] += n_used
        uv[f, b, UV_ABS_D] += abs_d
        uv[f, b, UV_ABS_C] += abs_c
        uv[f, b, UV_ABS_M] += abs_m
        uv[f, b, UV_DM_RE] += re_dm
        uv[f, b, UV_DM_IM] += im_dm
        uv[f, b, UV_CM_RE] += re_cm
        uv[f, b, UV_CM_IM] += im_cm
        # the baseline's phasor seen from antenna 2 is the conjugate
        antenna[f, a1, ANT_DM_W] += w_dm
        antenna[f, a1, ANT_DM_RE] += re_dm_w
        antenna[f, a1, ANT_DM_IM] += im_dm_w
        antenna[f, a2, ANT_DM_W] += w_dm
        antenna[f, a2, ANT_DM_RE] += re_dm_w
        antenna[f, a2, ANT_DM_IM] -= im_dm_w
        antenna[f, a1, ANT_CM_W] += w_cm
        antenna[f, a1, ANT_CM_RE] += re_cm_w
        antenna[f, a1, ANT_CM_IM] += im_cm_w
        antenna[f, a2, ANT_CM_W] += w_cm
        antenna[f, a2, ANT_CM_RE] += re_cm_w
        antenna[f, a2, ANT_CM_IM] -= im_cm_w


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
    ant1, ant2 = np.asarray(ant1, np.int64), np.asarray(ant2, np.int64)
    empty = np.zeros((0, 0, 0), np.complex64)
    float_buffer = np.zeros(1, np.float32)
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
        float_buffer,
        float_buffer.view(np.int32),
        *out.arrays(),
    )
    # every channel of a counted row adds n_corr to both antennas' totals
    counted = (ant1 != ant2) & (field_index >= 0)
    rows_per_antenna = (
        np.bincount(ant1[counted], minlength=n_ant)[:n_ant]
        + np.bincount(ant2[counted], minlength=n_ant)[:n_ant]
    )
    out.flag_map[:, :, 1] += (rows_per_antenna * n_corr)[:, None]
    return out
