"""Antenna-based gain solving: reduce the visibilities, then solve every problem at once.

The native engine's arithmetic, free of I/O. A solve of ``V_pq = g_p conj(g_q) M_pq``
over a block of data (a solution interval, one channel or a channel range, one
correlation) minimises ``sum w |V - g_p conj(g_q) M|^2``. Within the block the
gains are constant, so that sum equals ``sum_pq W_pq |X_pq - g_p conj(g_q)|^2``
plus a constant, with ``W = sum w |M|^2`` and ``X = sum w V conj(M) / W``: the
visibilities divided by the model and averaged with weights ``w |M|^2`` (what
CASA does to its solve buffer). :func:`accumulate` makes those sums per
baseline in one pass (and what the chi-squared of every integration needs);
:func:`solve_gains` runs StEFCal (Salvini & Wijnholds 2014) on every block at
once; :func:`solution_snr` is CASA's SNR (``|g| / err``, the error from the
Hessian's diagonal scaled by the reduced chi-squared of the block); the rest are
CASA's finishing steps (reference antenna, ``minblperant``, ``solnorm``, ``fillgaps``).

Arrays of problems are ``(problem, antenna, antenna)``: a problem is one
(block, channel, correlation).
"""

from __future__ import annotations

import warnings

import numba
import numpy as np

AMPLITUDE_AND_PHASE, PHASE_ONLY, AMPLITUDE_ONLY = 0, 1, 2  # CASA's calmode ap, p, a
CALMODES = {"ap": AMPLITUDE_AND_PHASE, "p": PHASE_ONLY, "a": AMPLITUDE_ONLY}


@numba.njit(cache=True, nogil=True)
def accumulate(data, model, weight, flag, ant1, ant2, row_time, row_block, chan_out, hands,
               prior, prior_time, calmode, vis_sum, weight_sum, square_sum, count,
               time_weight, weight_total):  # fmt: skip
    """Add each row's model-divided visibilities to its block's baseline sums.

    ``data``, ``model`` (row, chan, corr) complex; ``weight`` (row, chan, corr); ``flag``
    (row, chan, corr) bool; ``row_block`` (row,) the block of each row, -1 for rows
    not used; ``chan_out`` (chan,) the output channel of each channel (channels of one
    output channel adjacent), -1 for none; ``hands`` (pol,) the correlation solved for
    each polarisation (the parallel hands). ``prior`` (time, ant, chan, pol) complex:
    the earlier tables' gains (1 when none) at the times ``prior_time`` (row,) points
    to; the data are divided by ``prior[p] conj(prior[q])`` and a zero prior flags the
    visibility.

    Per row and output channel, as CASA's solve buffer: ``a = sum w V conj(M)``,
    ``b = sum w |M|^2`` (the average of ``V / M`` over the channels is ``a / b``, of
    weight ``b``); ``calmode`` :data:`PHASE_ONLY` takes that average at unit amplitude
    with its weight times its amplitude squared, :data:`AMPLITUDE_ONLY` its amplitude
    with the same weight (CASA's ``enforceAPonData``). Added in place to
    ``vis_sum`` (``a``), ``weight_sum`` (``b``), ``square_sum`` (``|a|^2 / b``, for the
    chi-squared of each integration's data) and ``count`` (data points), all (block,
    ant, ant, pol, chan_out) so that a row's channels are written side by side, at
    ``[block, ant1, ant2]`` only (:func:`both_triangles` adds the other); and per block
    to ``time_weight`` (``b`` times the row's ``row_time``) and ``weight_total``
    (``b``), whose ratio is the interval's time as CASA gives it (the mean time
    weighted as the solve weights the data).
    """
    n_row, n_chan, _ = data.shape
    # dividing by a gain is multiplying by its inverse; a flagged (zero) gain stays zero
    inverse = np.zeros_like(prior)
    for index in np.ndindex(prior.shape):
        if prior[index] != 0:
            inverse[index] = 1.0 / prior[index]
    for r in range(n_row):
        block = row_block[r]
        p = ant1[r]
        q = ant2[r]
        if block < 0 or p == q:
            continue
        t = prior_time[r]
        row_weight = 0.0
        for k in range(len(hands)):
            corr = hands[k]
            a = 0j
            b = 0.0
            for c in range(n_chan):
                out = chan_out[c]
                if out >= 0 and not flag[r, c, corr]:
                    w = weight[r, c, corr]
                    g = inverse[t, p, c, k] * np.conj(inverse[t, q, c, k])
                    m = model[r, c, corr]
                    mm = m.real * m.real + m.imag * m.imag
                    v = data[r, c, corr] * g
                    if (w > 0.0 and g != 0 and mm > 0.0 and np.isfinite(v.real)
                            and np.isfinite(v.imag)):  # fmt: skip
                        a += w * v * np.conj(m)
                        b += w * mm
                last = c == n_chan - 1 or chan_out[c + 1] != out
                if out < 0 or not last or not (b > 0.0):
                    if last:
                        a = 0j
                        b = 0.0
                    continue
                row_weight += b
                if calmode == PHASE_ONLY:
                    amp = abs(a) / b
                    if amp > 0.0:
                        a = a / abs(a) * b * amp * amp
                        b = b * amp * amp
                elif calmode == AMPLITUDE_ONLY:
                    a = abs(a) + 0j
                vis_sum[block, p, q, k, out] += a
                weight_sum[block, p, q, k, out] += b
                square_sum[block, p, q, k, out] += (a.real * a.real + a.imag * a.imag) / b
                count[block, p, q, k, out] += 1
                a = 0j
                b = 0.0
        time_weight[block] += row_weight * row_time[r]
        weight_total[block] += row_weight


def both_triangles(vis_sum, weight_sum, square_sum, count):
    """:func:`accumulate`'s sums as (block, chan_out, pol, ant, ant) problems, each baseline
    at ``[p, q]`` and (``vis_sum`` conjugated) ``[q, p]``."""
    order = (0, 4, 3, 1, 2)
    vis = vis_sum.transpose(order)
    vis = vis + np.conj(np.swapaxes(vis, -1, -2))
    rest = [x.transpose(order) for x in (weight_sum, square_sum, count)]
    return (vis, *(x + np.swapaxes(x, -1, -2) for x in rest))


def enforce_min_baselines(weight, min_baselines: int) -> np.ndarray:
    """(problem, ant) usable antennas: at least ``min_baselines`` baselines to other usable
    antennas, removed repeatedly until none falls short (CASA's ``minblperant``)."""
    has = weight > 0
    usable = has.any(axis=2)
    while True:
        pairs = has & usable[:, :, None] & usable[:, None, :]
        count = pairs.sum(axis=2)
        keep = usable & (count >= max(min_baselines, 1))
        if np.array_equal(keep, usable):
            return keep
        usable = keep


@numba.njit(cache=True, nogil=True)
def solve_gains(vis, weight, usable, phase_only, max_iter, tolerance):
    """StEFCal on every problem: gains ``g`` minimising ``sum W |X - g_p conj(g_q)|^2``.

    ``vis`` X (problem, ant, ant) Hermitian, ``weight`` W (problem, ant, ant), ``usable``
    (problem, ant) bool. Phase-only solves keep ``|g| = 1``. Returns (gains, iterations);
    unusable antennas get gain 0.
    """
    n_prob, n_ant, _ = vis.shape
    gains = np.zeros((n_prob, n_ant), np.complex128)
    iterations = np.zeros(n_prob, np.int64)
    for i in range(n_prob):
        g = np.zeros(n_ant, np.complex128)
        for p in range(n_ant):
            if usable[i, p]:
                g[p] = 1.0
        new = np.zeros(n_ant, np.complex128)
        for it in range(max_iter):
            for p in range(n_ant):
                if not usable[i, p]:
                    new[p] = 0.0
                    continue
                num = 0j
                den = 0.0
                for q in range(n_ant):
                    w = weight[i, p, q]
                    if w > 0.0 and usable[i, q]:
                        num += w * vis[i, p, q] * g[q]
                        den += w * (g[q].real * g[q].real + g[q].imag * g[q].imag)
                if den > 0.0:
                    new[p] = num / den
                    if phase_only:
                        a = abs(new[p])
                        new[p] = new[p] / a if a > 0.0 else 1.0
                else:
                    new[p] = g[p]
            if it % 2 == 1:  # StEFCal's averaging of every other step
                for p in range(n_ant):
                    new[p] = 0.5 * (new[p] + g[p])
                    if phase_only and usable[i, p]:
                        a = abs(new[p])
                        new[p] = new[p] / a if a > 0.0 else 1.0
            change = 0.0
            norm = 0.0
            for p in range(n_ant):
                d = new[p] - g[p]
                change += d.real * d.real + d.imag * d.imag
                norm += new[p].real * new[p].real + new[p].imag * new[p].imag
                g[p] = new[p]
            iterations[i] = it + 1
            if norm == 0.0 or change <= tolerance * tolerance * norm:
                break
        for p in range(n_ant):
            gains[i, p] = g[p]
    return gains, iterations


def degenerate(gains, usable, max_ratio: float = 100.0) -> np.ndarray:
    """(problem,) solves that found no antenna-based solution: one antenna's amplitude
    ``max_ratio`` times the median of the others or more. Data no antenna gains explain
    (noise, or phases without antenna structure) let the off-diagonal least squares
    run to a star: one gain without bound, the rest towards 0."""
    amp = np.where(usable, np.abs(gains), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(amp, axis=1)
        ratio = np.nanmax(amp, axis=1) / median
    return usable.any(axis=1) & ~(ratio < max_ratio)


def solution_snr(vis_sum, weight_sum, square_sum, count, gains, usable, groups) -> np.ndarray:
    """CASA's SNR of each solution, (problem, ant): ``|g| / err``.

    ``err = sqrt(2 k2 / H_p)`` with ``H_p = sum_q W_pq |g_q|^2`` the Hessian's
    diagonal and ``k2 = chi2 / (2 (n_data - n_par))`` the reduced chi-squared of the
    solve over every integration's data (from the sums of :func:`accumulate`),
    pooled over the problems solved together (CASA solves the correlations of a block
    in one go): ``groups`` (problem,) numbers them.
    """
    n_prob, n_ant, _ = vis_sum.shape
    upper = np.triu(np.ones((n_ant, n_ant), bool), 1)
    both = usable[:, :, None] & usable[:, None, :] & (weight_sum > 0)
    pair = both & upper
    model = gains[:, :, None] * np.conj(gains[:, None, :])
    residual = square_sum - 2 * np.real(np.conj(model) * vis_sum) + np.abs(model) ** 2 * weight_sum
    chi2 = np.where(pair, residual, 0.0).sum(axis=(1, 2))
    n_data = np.where(pair, count, 0).sum(axis=(1, 2))
    n_par = usable.sum(axis=1)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    group_chi2 = np.bincount(groups, chi2, n_groups)
    group_dof = 2.0 * (np.bincount(groups, n_data, n_groups) - np.bincount(groups, n_par, n_groups))
    with np.errstate(divide="ignore", invalid="ignore"):
        k2 = np.where(group_dof > 0, np.maximum(group_chi2, 0.0) / group_dof, np.nan)[groups]
        hessian = np.where(both, weight_sum * np.abs(gains[:, None, :]) ** 2, 0.0).sum(axis=2)
        error = np.sqrt(2.0 * k2[:, None] / hessian)
        snr = np.where(usable & (hessian > 0), np.abs(gains) / error, 0.0)
    # A perfect fit (chi2 = 0 with data to spare) is infinitely significant; anything
    # undefined (a degenerate solve) is not significant at all.
    perfect = (
        usable
        & (hessian > 0)
        & (group_chi2[groups] == 0)[:, None]
        & (group_dof[groups] > 0)[:, None]
    )
    return np.where(perfect, np.inf, np.nan_to_num(snr, nan=0.0, posinf=0.0))


def reference_phase(gains, ok, refant_order) -> np.ndarray:
    """Rotate each problem's gains so the reference antenna's phase is 0.

    ``refant_order``: antennas in order of preference (the first with a good
    solution in the problem is used, as CASA's ``refantmode='flex'``). A problem
    with none of them keeps its phases.
    """
    out = gains.copy()
    chosen = np.full(len(gains), -1)
    for ant in refant_order[::-1]:
        chosen = np.where(ok[:, ant], ant, chosen)
    rows = np.flatnonzero(chosen >= 0)
    ref = gains[rows, chosen[rows]]
    out[rows] *= (np.conj(ref) / np.abs(ref))[:, None]
    return out


def normalise_over_channels(gains, ok) -> np.ndarray:
    """CASA's bandpass ``solnorm``: per (block, corr, ant), divide by the root mean square
    amplitude and the phase of the summed unit phasors of the good channels (CASA 6.7's
    tables have unit power over the channels).

    ``gains``, ``ok``: (block, chan, corr, ant); only with two or more good channels.
    """
    amp = np.abs(gains)
    unit = np.where(ok, gains / np.where(amp > 0, amp, 1.0), 0)
    phasor = unit.sum(axis=1, keepdims=True)
    n_good = ok.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.where(ok, amp**2, 0).sum(axis=1, keepdims=True) / n_good
        factor = phasor / np.abs(phasor) * np.sqrt(power)
    usable = (n_good > 1) & (np.abs(factor) > 0) & np.isfinite(factor)
    return np.where(usable, gains / np.where(usable, factor, 1), gains)


def fill_channel_gaps(gains, ok, max_gap: int):
    """CASA's ``fillgaps``: runs of at most ``max_gap`` flagged channels between good ones
    filled by linear interpolation of amplitude and phase; (gains, ok) returned.

    ``gains``, ``ok``: (block, chan, corr, ant).
    """
    gains, ok = gains.copy(), ok.copy()
    if max_gap <= 0:
        return gains, ok
    n_chan = gains.shape[1]
    moved = np.moveaxis(gains, 1, -1).reshape(-1, n_chan)
    good = np.moveaxis(ok, 1, -1).reshape(-1, n_chan)
    filled, filled_ok = moved.copy(), good.copy()
    channels = np.arange(n_chan)
    for i in np.flatnonzero(good.any(axis=1) & ~good.all(axis=1)):
        for start, stop in _gaps(good[i]):
            if start == 0 or stop == n_chan or stop - start > max_gap:
                continue
            lo, hi = start - 1, stop
            frac = (channels[start:stop] - lo) / (hi - lo)
            amp = np.abs(moved[i, lo]) * (1 - frac) + np.abs(moved[i, hi]) * frac
            step = np.angle(moved[i, hi] / moved[i, lo])
            phase = np.angle(moved[i, lo]) + step * frac
            filled[i, start:stop] = amp * np.exp(1j * phase)
            filled_ok[i, start:stop] = True
    shape = np.moveaxis(gains, 1, -1).shape
    return (np.moveaxis(filled.reshape(shape), -1, 1), np.moveaxis(filled_ok.reshape(shape), -1, 1))


def _gaps(good) -> list[tuple[int, int]]:
    """(start, stop) of every run of False."""
    edges = np.diff(np.concatenate([[1], good.astype(int), [1]]))
    return list(zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1), strict=True))


def interpolate_in_time(times, values, ok, at, mode: str):
    """Solutions at ``at`` (MJD s) from the solution slots at ``times``, as CASA applies them.

    ``values``, ``ok``: (time, ...). Every slot counts, flagged or not (CASA's
    ``CTTimeInterp1``): before the first or after the last slot, that slot; ``nearest``,
    the nearest slot; ``linear``, amplitude and phase interpolated between the slots
    either side, flagged if either is. Returns (values at ``at``, ok at ``at``).
    """
    values, ok, lo, hi, frac = _time_slots(times, values, ok, at, mode)
    start, end = values[lo], values[hi]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.angle(np.where(start != 0, end / start, 1.0))
    amp = np.abs(start) * (1 - frac) + np.abs(end) * frac
    interpolated = amp * np.exp(1j * (np.angle(start) + step * frac))
    return interpolated, ok[lo] & ok[hi]


def interpolate_real_in_time(times, values, ok, at, mode: str):
    """:func:`interpolate_in_time` of real parameters (delays): the same slots, the
    values themselves interpolated linearly."""
    values, ok, lo, hi, frac = _time_slots(times, values, ok, at, mode)
    return values[lo] * (1 - frac) + values[hi] * frac, ok[lo] & ok[hi]


def _time_slots(times, values, ok, at, mode: str):
    """(values and ok in time order, slot before, slot after, fraction between) at ``at``."""
    order = np.argsort(times)
    times = np.asarray(times, float)[order]
    values, ok = np.asarray(values)[order], np.asarray(ok)[order]
    at = np.asarray(at, float)
    n = len(times)
    last = np.clip(np.searchsorted(times, at, side="right") - 1, 0, n - 1)  # slot at or before
    if mode == "nearest" or n == 1:
        after = np.minimum(last + 1, n - 1)
        closer = (times[after] - at) < (at - times[last])
        lo = hi = np.where(closer, after, last)
        frac = np.zeros(len(at))
    else:
        lo = np.minimum(last, n - 2)
        hi = lo + 1
        frac = np.clip((at - times[lo]) / (times[hi] - times[lo]), 0.0, 1.0)
        # on a slot, or beyond the ends: that slot alone
        hi, lo = np.where(frac == 0, lo, hi), np.where(frac == 1, hi, lo)
    return values, ok, lo, hi, frac.reshape(-1, *([1] * (values.ndim - 1)))


def fill_flagged_channels(values, ok):
    """CASA's resampling in frequency of a time-interpolated solution: per (time, antenna,
    polarisation) the flagged channels are interpolated from the good ones (amplitude and
    unwrapped phase, linear, the nearest beyond the ends) and unflagged; a series without
    a good channel stays flagged. ``values``, ``ok``: (time, ant, chan, pol)."""
    n_chan = values.shape[2]
    series = np.moveaxis(values, 2, -1).reshape(-1, n_chan)
    good = np.moveaxis(ok, 2, -1).reshape(-1, n_chan)
    filled, filled_ok = series.copy(), good.copy()
    partial = good.any(axis=1) & ~good.all(axis=1)
    channels = np.arange(n_chan)
    for i in np.flatnonzero(partial):
        use = good[i]
        amp = np.interp(channels, channels[use], np.abs(series[i, use]))
        phase = np.interp(channels, channels[use], np.unwrap(np.angle(series[i, use])))
        filled[i] = amp * np.exp(1j * phase)
        filled_ok[i] = True
    shape = np.moveaxis(values, 2, -1).shape
    return (np.moveaxis(filled.reshape(shape), -1, 2),
            np.moveaxis(filled_ok.reshape(shape), -1, 2))  # fmt: skip


def solution_blocks(times, fields, scans, solint_s: float, combine_field: bool,
                    combine_scan: bool) -> np.ndarray:  # fmt: skip
    """The solution interval of each row, numbered from 0 in time order.

    As CASA: data split by scan and field unless combined, then in bins of
    ``solint_s`` on a grid from the first time (``inf``: one bin).
    """
    times = np.asarray(times, float)
    bins = np.zeros(len(times), np.int64)
    if np.isfinite(solint_s) and len(times):
        bins = np.floor((times - times.min()) / solint_s + 1e-9).astype(np.int64)
    keys = [bins]
    if not combine_scan:
        keys.append(np.asarray(scans))
    if not combine_field:
        keys.append(np.asarray(fields))
    # one integer code per row from the dense codes of each key
    code = np.zeros(len(times), np.int64)
    for key in keys:
        values, dense = np.unique(key, return_inverse=True)
        code = code * len(values) + dense.ravel()
    unique, inverse = np.unique(code, return_inverse=True)
    inverse = inverse.ravel()
    first_time = np.full(len(unique), np.inf)
    np.minimum.at(first_time, inverse, times)
    order = np.lexsort((np.arange(len(unique)), first_time))
    renumber = np.empty(len(unique), np.int64)
    renumber[order] = np.arange(len(unique))
    return renumber[inverse]
