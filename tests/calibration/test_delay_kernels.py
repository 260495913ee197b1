"""The FFT delay kernels against a direct search and against the phase slope they invert."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.calibration import delay_kernels as d
from dsa110_contimg.calibration import solver_kernels as k

FREQ_HZ = 1.30e9 + 0.244e6 * np.arange(48)  # one DSA-110 SPW
RESOLUTION_NS = 1e9 / (len(FREQ_HZ) * 0.244e6)  # one unpadded FFT sample: 85 ns


def _baselines(delays_ns, noise, seed):
    """(chan, series) visibilities of baselines to a reference antenna with these delays."""
    rng = np.random.default_rng(seed)
    offset = (FREQ_HZ - FREQ_HZ[0])[:, None] / 1e9
    vis = 3.0 * np.exp(2j * np.pi * offset * np.asarray(delays_ns)[None, :] + 0.7j)
    return vis + noise * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))


def _direct_peak(vis):
    """Delay (ns) maximising |sum_f V exp(-2 pi i f tau)| on a fine grid: no FFT, no parabola."""
    grid = np.linspace(-RESOLUTION_NS / 2, RESOLUTION_NS / 2, 40001)
    phasors = np.exp(-2j * np.pi * np.outer(FREQ_HZ - FREQ_HZ[0], grid) / 1e9)
    return grid[np.argmax(np.abs(vis.T @ phasors), axis=1)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=6), st.integers(0, 2**16))
def test_multiband_delays_find_the_peak_of_the_delay_spectrum(delays, seed):
    """The interval's summed visibilities: the parabola through the 8x padded transform's
    peak lands within 1 % of an unpadded sample of the peak a direct search finds."""
    vis = _baselines(delays, noise=0.3, seed=seed)
    found_delays, found = d.multiband_delays(vis, FREQ_HZ)
    assert found.all()
    np.testing.assert_allclose(found_delays, _direct_peak(vis), atol=0.01 * RESOLUTION_NS)
    np.testing.assert_allclose(found_delays, delays, atol=0.05 * RESOLUTION_NS)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=6), st.integers(0, 2**16))
def test_single_integration_delays_find_the_same_peak(delays, seed):
    vis = _baselines(delays, noise=0.3, seed=seed)
    found_delays, found = d.single_integration_delays(vis, FREQ_HZ)
    assert found.all()
    np.testing.assert_allclose(found_delays, _direct_peak(vis), atol=0.01 * RESOLUTION_NS)


def test_a_baseline_without_data_has_no_delay():
    vis = _baselines([5.0, 0.0], noise=0.0, seed=0)
    vis[:, 1] = 0
    for solve in (d.multiband_delays, d.single_integration_delays):
        delays, found = solve(vis, FREQ_HZ)
        assert found.tolist() == [True, False] and delays[1] == 0.0
        assert abs(delays[0] - 5.0) < 0.05 * RESOLUTION_NS


def test_delay_phasors_undo_the_delay_they_were_solved_from():
    """Dividing by exp(2 pi i tau (f - f_ref)) leaves a flat phase across the band."""
    vis = _baselines([12.5, -7.0], noise=0.0, seed=0)
    delays, _ = d.multiband_delays(vis, FREQ_HZ)
    phasors = d.delay_phasors(delays[None, :], FREQ_HZ, FREQ_HZ.mean())  # (1, chan, series)
    flat = np.angle(vis / phasors[0])
    assert np.ptp(np.unwrap(flat, axis=0), axis=0).max() < np.deg2rad(2.0)
    np.testing.assert_allclose(np.abs(phasors), 1.0)
    np.testing.assert_allclose(np.angle(phasors[0, len(FREQ_HZ) // 2]), 0.0, atol=0.1)


def test_real_parameters_interpolate_linearly_between_the_same_slots():
    times = np.array([0.0, 10.0, 20.0])
    values = np.array([[1.0], [3.0], [-5.0]])
    ok = np.array([[True], [True], [False]])
    at = np.array([-5.0, 0.0, 5.0, 10.0, 15.0, 30.0])
    linear, linear_ok = k.interpolate_real_in_time(times, values, ok, at, "linear")
    np.testing.assert_allclose(linear[:, 0], [1.0, 1.0, 2.0, 3.0, -1.0, -5.0])
    assert linear_ok[:, 0].tolist() == [True, True, True, True, False, False]
    nearest, _ = k.interpolate_real_in_time(times, values, ok, at, "nearest")
    np.testing.assert_allclose(nearest[:, 0], [1.0, 1.0, 1.0, 3.0, 3.0, -5.0])
