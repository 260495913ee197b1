"""Antenna delays from the FFT of baselines to the reference antenna, as CASA's KJones.

CASA's ``gaincal(gaintype='K')`` transforms, per antenna and parallel hand, the
visibilities of its baseline to the reference antenna over channels and takes
the peak, refined by a parabola through the peak and its two neighbours. A
solution interval of several integrations goes through its multi-band path: the
weighted model-divided visibilities summed over the interval (``sum w V M*``),
placed from the first channel in a transform of 8x the spanned band plus two
channels, peak searched over every sample (neighbours wrap). An interval of one
integration goes through its single-buffer path: the averaged visibilities
centred in a transform of 8x the channels, the peak searched away from the ends.
Delays in nanoseconds, positive when the antenna's signal arrives late.
"""

from __future__ import annotations

import numpy as np

PAD_FACTOR = 8


def _parabolic_peak(amp, low, high, wrap: bool):
    """(fractional peak sample, found) of each column of ``amp`` (sample, series)."""
    n = amp.shape[0]
    search = amp[low:high]
    peak = low + np.argmax(search, axis=0)
    top = np.take_along_axis(amp, peak[None], 0)[0]
    before, after = (peak - 1, peak + 1)
    if wrap:
        before, after = before % n, after % n
    lo = np.take_along_axis(amp, before[None], 0)[0]
    hi = np.take_along_axis(amp, after[None], 0)[0]
    denom = lo - 2 * top + hi
    found = (top > 0) & (np.abs(denom) > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fractional = peak + 0.5 - (hi - top) / denom
    return np.where(found, fractional, 0.0), found


def multiband_delays(vis_sum, chan_freq_hz):
    """(delay ns, found) per series from ``vis_sum`` (chan, series): each series the
    weighted model-divided visibilities of one baseline to the reference antenna, summed
    over the interval's integrations, oriented (antenna, reference)."""
    freq_ghz = np.asarray(chan_freq_hz, float) / 1e9
    width = abs(freq_ghz[1] - freq_ghz[0])
    total = np.floor(2.0 + (freq_ghz.max() - freq_ghz.min()) / width) * width
    n_pad = int(0.5 + PAD_FACTOR * total / width)
    padded = np.zeros((n_pad, vis_sum.shape[1]), np.complex64)
    padded[: len(freq_ghz)] = vis_sum
    amp = np.abs(np.fft.fft(padded, axis=0)).astype(np.float32)
    peak, found = _parabolic_peak(amp, 0, n_pad, wrap=True)
    cycles = peak / n_pad
    cycles = np.where(cycles > 0.5, cycles - 1.0, cycles)
    return np.where(found, cycles / (freq_ghz[1] - freq_ghz[0]), 0.0), found


def single_integration_delays(vis, chan_freq_hz):
    """(delay ns, found) per series from ``vis`` (chan, series): one integration's
    model-divided visibilities of each baseline to the reference antenna, oriented
    (antenna, reference)."""
    freq_ghz = np.asarray(chan_freq_hz, float) / 1e9
    n_chan = len(freq_ghz)
    n_pad = n_chan * PAD_FACTOR
    padded = np.zeros((n_pad, vis.shape[1]), np.complex64)
    start = n_chan * (PAD_FACTOR - 1) // 2
    padded[start : start + n_chan] = vis
    amp = np.abs(np.fft.fftshift(np.fft.fft(padded, axis=0), axes=0)).astype(np.float32)
    peak, found = _parabolic_peak(amp, 1, n_pad - 1, wrap=False)
    cycles = (peak - n_pad // 2) / n_pad
    return np.where(found, cycles / (freq_ghz[1] - freq_ghz[0]), 0.0), found


def delay_phasors(delay_ns, chan_freq_hz, ref_freq_hz):
    """exp(2 pi i tau (f - f_ref)): a delay's gain at each channel (CASA's K Jones).
    ``delay_ns`` (..., pol) -> (..., chan, pol)."""
    offset_ghz = (np.asarray(chan_freq_hz, float) - float(ref_freq_hz)) / 1e9
    return np.exp(2j * np.pi * np.asarray(delay_ns)[..., None, :] * offset_ghz[:, None])
