"""Pure numpy metrics of calibration solutions, per SPW.

Shapes as CASA stores them: ``values`` (row, chan, corr) complex (CPARAM) or
float (FPARAM, delays); ``flag`` and ``snr`` (row, chan, corr); ``antenna``,
``spw`` and ``time`` (row,). A row is one antenna's solution at one time.
"""

from __future__ import annotations

import warnings

import numpy as np

AMP_RANGE = (0.1, 10.0)  # gain amplitudes outside this range are suspicious


def _circular_std_deg(phasors, axis):
    """Circular std (deg) of unit phasors along ``axis``; NaN where none are finite."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(phasors, axis=axis)
        r = np.clip(np.abs(mean), 1e-300, 1.0)
        return np.degrees(np.sqrt(np.maximum(-2.0 * np.log(r), 0.0)))


def _robust_std(x) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def spw_solution_metrics(values, flag, snr, antenna, n_antennas: int, kind: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of dead antennas
        return _spw_solution_metrics(values, flag, snr, antenna, n_antennas, kind)


def _spw_solution_metrics(values, flag, snr, antenna, n_antennas, kind) -> dict:
    """Metrics of one SPW's solutions (rows of that SPW only).

    ``antenna_flagged_fraction`` (n_antennas,) is NaN for an antenna with no
    rows; ``fully_flagged_antennas`` lists antennas with rows that are all
    flagged. Complex tables add amplitude and phase statistics; a bandpass
    (``kind`` "B") adds its roughness across channels: the robust rms of the
    second difference of amplitude (relative to the median amplitude) and of
    phase (deg), per antenna and correlation, medianed.
    """
    values, flag = np.asarray(values), np.asarray(flag, bool)
    antenna = np.asarray(antenna)
    good = ~flag & np.isfinite(values)
    per_antenna = np.full(n_antennas, np.nan)
    for a in np.unique(antenna):
        if 0 <= a < n_antennas:
            per_antenna[a] = flag[antenna == a].mean()
    metrics = {
        "n_solutions": int(flag.size),
        "flagged_fraction": float(flag.mean()) if flag.size else float("nan"),
        "antenna_flagged_fraction": per_antenna,
        "fully_flagged_antennas": [int(a) for a in np.flatnonzero(per_antenna == 1.0)],
        "n_fully_flagged_antennas": int(np.sum(per_antenna == 1.0)),
    }
    if snr is not None and good.any():
        kept_snr = np.asarray(snr)[good]
        metrics["snr_median"] = float(np.median(kept_snr))
        metrics["snr_p10"] = float(np.percentile(kept_snr, 10))
    if not np.iscomplexobj(values) or not good.any():
        return metrics
    amp = np.abs(values[good])
    metrics["amp_median"] = float(np.median(amp))
    metrics["amp_scatter"] = _robust_std(amp) / metrics["amp_median"]
    lo, hi = AMP_RANGE
    metrics["amp_out_of_range_fraction"] = float(np.mean((amp < lo) | (amp > hi)))
    phasors = np.where(good, values / np.where(good, np.abs(values), 1.0), np.nan)
    if kind == "B":
        # (row, chan, corr): scatter of each solution's phase across channels
        metrics["phase_scatter_deg"] = float(np.nanmedian(_circular_std_deg(phasors, axis=1)))
        metrics.update(_bandpass_roughness(values, good))
    else:
        metrics["phase_scatter_deg"] = float(
            np.nanmedian(_per_antenna_time_scatter(phasors, antenna))
        )
    return metrics


def _per_antenna_time_scatter(phasors, antenna) -> np.ndarray:
    """Circular phase std (deg) over time of each antenna's solutions (chan, corr pooled)."""
    out = []
    for a in np.unique(antenna):
        rows = phasors[antenna == a]
        if np.isfinite(rows).sum() > 1:
            out.append(_circular_std_deg(rows.reshape(len(rows), -1), axis=0))
    return np.concatenate(out) if out else np.array([np.nan])


def _bandpass_roughness(values, good) -> dict:
    if values.shape[1] < 3:
        return {"bandpass_amp_roughness": float("nan"), "bandpass_phase_roughness_deg": np.nan}
    amp = np.where(good, np.abs(values), np.nan)
    phase = np.where(good, np.unwrap(np.angle(np.where(good, values, 1.0)), axis=1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        amp_d2 = np.diff(amp, n=2, axis=1) / np.nanmedian(amp, axis=1, keepdims=True)
        rough_amp = 1.4826 * np.nanmedian(np.abs(amp_d2), axis=1) / np.sqrt(6.0)
        rough_phase = 1.4826 * np.nanmedian(np.abs(np.diff(phase, n=2, axis=1)), axis=1)
    # sqrt(6): the second difference of white noise has 6x its variance
    return {
        "bandpass_amp_roughness": float(np.nanmedian(rough_amp)),
        "bandpass_phase_roughness_deg": float(np.degrees(np.nanmedian(rough_phase) / np.sqrt(6))),
    }


def bandpass_truth_errors(values, flag, antenna, spw, refant: int, truth_bandpass) -> dict:
    """Median |amplitude| and phase (deg) error of B solutions against the simulated truth.

    ``truth_bandpass`` (ant, spw, chan, corr); solutions on channels averaged
    by a whole factor are compared with the truth averaged alike (NaN when the
    channels do not divide). CASA references every solution
    to ``refant``, so its phase is removed from the truth per channel; each
    solution (antenna, SPW, correlation) is then compared up to one complex
    constant (the solnorm scale and the phase the pre-bandpass solve took).
    """
    n_chan, truth_chan = np.shape(values)[1], truth_bandpass.shape[2]
    if n_chan != truth_chan:
        if n_chan == 0 or truth_chan % n_chan:
            return {"amp_error": float("nan"), "phase_error_deg": float("nan")}
        # solved on averaged channels: compare with the truth averaged the same way
        shape = truth_bandpass.shape
        truth_bandpass = truth_bandpass.reshape(
            shape[0], shape[1], n_chan, truth_chan // n_chan, shape[3]
        ).mean(axis=3)
    expected = truth_bandpass[antenna, spw]
    expected = expected * np.exp(-1j * np.angle(truth_bandpass[refant, spw]))
    usable = ~np.asarray(flag, bool) & (np.abs(expected) > 0) & np.isfinite(values)
    if not usable.any():
        return {"amp_error": float("nan"), "phase_error_deg": float("nan")}
    ratio = np.where(usable, values / np.where(usable, expected, 1.0), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of dead antennas
        ratio = ratio / np.nanmean(ratio, axis=1, keepdims=True)
    return {
        "amp_error": float(np.nanmedian(np.abs(np.abs(ratio) - 1.0))),
        "phase_error_deg": float(np.nanmedian(np.degrees(np.abs(np.angle(ratio))))),
    }
