"""Pure numpy kernels that draw and apply the known corruptions.

Gain convention (CASA's): the observed visibility of the baseline
(ANTENNA1 = i, ANTENNA2 = j) is ``g_i * conj(g_j) * V_sky`` plus noise, with
``g`` the product of a per-antenna bandpass (ant, spw, chan, corr) and a slow
per-antenna phase drift exp(i phi(ant, time, corr)).
"""

from __future__ import annotations

import numpy as np


def draw_bandpass(rng, n_ant, chan_freq_hz, n_corr, amp_scatter, phase_scatter_deg, delay_ns):
    """Complex bandpass (ant, spw, chan, corr), each SPW with its own shape.

    Amplitude: per-antenna/SPW/correlation level (scatter ``amp_scatter``), a
    smooth ripple and a roll-off at the SPW edges (a filter-bank shape).
    Phase: a per-antenna delay, per-SPW offsets (scatter ``phase_scatter_deg``)
    and a smooth ripple.
    """
    n_spw, n_chan = chan_freq_hz.shape
    x = np.linspace(-1.0, 1.0, n_chan)  # position within the SPW
    shape = (n_ant, n_spw, n_chan, n_corr)

    level = 1.0 + amp_scatter * rng.standard_normal((n_ant, n_spw, 1, n_corr))
    ripple_amp = 0.3 * amp_scatter * rng.standard_normal((n_ant, n_spw, 1, n_corr))
    ripple_phase = rng.uniform(0, 2 * np.pi, (n_ant, n_spw, 1, n_corr))
    ripple = ripple_amp * np.cos(np.pi * x[None, None, :, None] + ripple_phase)
    edge = 1.0 - 0.15 * x[None, None, :, None] ** 8
    amplitude = np.clip(level + ripple, 0.2, None) * edge

    delay_s = delay_ns * 1e-9 * rng.standard_normal((n_ant, 1, 1, n_corr))
    offset = np.radians(phase_scatter_deg) * rng.standard_normal((n_ant, n_spw, 1, n_corr))
    wiggle = np.radians(0.2 * phase_scatter_deg) * rng.standard_normal((n_ant, n_spw, 1, n_corr))
    freq = chan_freq_hz[None, :, :, None]
    phase = (
        2 * np.pi * delay_s * (freq - freq.mean()) + offset + wiggle * x[None, None, :, None] ** 2
    )
    return (amplitude * np.exp(1j * phase)).reshape(shape)


def draw_phase_drift(rng, n_ant, time_s, n_corr, rms_deg):
    """Slow phase drift (ant, time, corr) in radians: a linear trend plus a slow wave.

    Periods are 10-40 min, so a 5-minute observation sees a smooth curve. The
    drift is zero-mean over the observation for each antenna and correlation.
    """
    t = np.asarray(time_s, dtype=float) - np.mean(time_s)
    span = max(float(np.ptp(t)), 1.0)
    slope = rng.standard_normal((n_ant, 1, n_corr)) / span
    period = rng.uniform(600.0, 2400.0, (n_ant, 1, 1))
    wave_phase = rng.uniform(0, 2 * np.pi, (n_ant, 1, n_corr))
    common = rng.standard_normal((n_ant, 1, 1))
    drift = slope * t[None, :, None] + common * np.sin(
        2 * np.pi * t[None, :, None] / period + wave_phase
    )
    drift -= drift.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.mean(drift**2))
    if scale > 0:
        drift *= np.radians(rms_deg) / scale
    return drift


def apply_baseline_gains(model, gain1, gain2):
    """``gain1 * conj(gain2) * model``; arrays broadcast as (row, chan, corr)."""
    return gain1 * np.conj(gain2) * model


def thermal_noise(rng, shape, sigma):
    """Complex Gaussian noise with standard deviation ``sigma`` per real/imag part."""
    noise = rng.standard_normal((*shape, 2))
    return sigma * (noise[..., 0] + 1j * noise[..., 1])


def radiometer_sigma(sefd_jy, chan_width_hz, integration_s):
    """Noise per real/imaginary part of one correlation: SEFD / sqrt(2 dnu tau)."""
    return sefd_jy / np.sqrt(2.0 * chan_width_hz * integration_s)
