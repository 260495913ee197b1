"""The fused metric kernels against direct numpy, with flags, NaNs and zeros."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110_contimg.qa import kernels
from dsa110_contimg.qa import visibility_kernels as vk
from dsa110_contimg.qa import visibility_metrics as vm


def _reference(data, model, flag, weight, cross):
    w = np.broadcast_to(weight[:, None, :], data.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = ~flag & cross[:, None, None] & np.isfinite(data) & np.isfinite(model)
        ok &= (data != 0) & (model != 0) & np.isfinite(w) & (w > 0)
    d, m, w = data[ok], model[ok], w[ok].astype(float)
    result = {
        "n_used": int(ok.sum()),
        "flagged_fraction": float(flag[cross].mean()) if cross.any() else float("nan"),
    }
    if ok.any():
        r_model = np.abs(np.sum(w * m / np.abs(m))) / w.sum()
        diff = d * np.conj(m)
        r_diff = np.abs(np.sum(w * diff / np.abs(diff))) / w.sum()
        result["model_phase_scatter_deg"] = np.degrees(np.sqrt(max(-2 * np.log(r_model), 0)))
        result["data_model_phase_scatter_deg"] = np.degrees(np.sqrt(max(-2 * np.log(r_diff), 0)))
        ratios = np.sort(np.abs(d) / np.abs(m))
        result["median_bounds"] = (ratios[(len(ratios) - 1) // 2], ratios[len(ratios) // 2])
    return result


@settings(max_examples=60, deadline=None)
@given(
    n_row=st.integers(1, 30),
    n_chan=st.integers(1, 6),
    n_corr=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**31),
    bad_fraction=st.floats(0, 0.5),
)
def test_alignment_partials_match_numpy(n_row, n_chan, n_corr, seed, bad_fraction):
    rng = np.random.default_rng(seed)
    shape = (n_row, n_chan, n_corr)
    model = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    phase = rng.normal(0, 0.5, size=shape)
    data = (model * rng.uniform(0.5, 2, size=shape) * np.exp(1j * phase)).astype(np.complex64)
    bad = rng.uniform(size=shape) < bad_fraction
    data[bad & (rng.uniform(size=shape) < 0.5)] = np.nan
    data[bad & (rng.uniform(size=shape) < 0.3)] = 0
    model[bad & (rng.uniform(size=shape) < 0.2)] = np.nan
    flag = rng.uniform(size=shape) < bad_fraction
    weight = rng.uniform(0.1, 2, size=(n_row, n_corr)).astype(np.float32)
    weight[rng.uniform(size=weight.shape) < bad_fraction / 2] = 0
    cross = rng.uniform(size=n_row) > 0.2

    # Split rows in two chunks: partial sums must add.
    half = n_row // 2
    parts = [
        kernels.phase_alignment_partials(data[s], model[s], flag[s], weight[s], cross[s])
        for s in (slice(0, half), slice(half, None))
    ]
    got = kernels.finalise_phase_alignment(parts[0] + parts[1])
    want = _reference(data, model, flag, weight, cross)
    assert got["n_used"] == want["n_used"]
    if cross.any():
        assert np.isclose(got["flagged_fraction"], want["flagged_fraction"])
    if want["n_used"]:
        for key in ("model_phase_scatter_deg", "data_model_phase_scatter_deg"):
            assert np.isclose(got[key], want[key], rtol=1e-3, atol=0.05), key
        # Between the lower and upper middle values, to one histogram bin (0.005 dex).
        low, high = np.log10(want["median_bounds"])
        assert low - 0.0051 <= np.log10(got["median_amp_ratio"]) <= high + 0.0051
    else:
        assert np.isnan(got["data_model_phase_scatter_deg"])


def test_histogram_median_of_known_values():
    values = np.array([0.5, 1.0, 2.0, 3.0, 100.0])
    counts = kernels.log_histogram(values)
    assert abs(kernels.histogram_median(counts) / 2.0 - 1) < 0.012
    assert np.isnan(kernels.histogram_median(np.zeros_like(counts)))


def test_coherence_is_one_for_matching_model_and_low_for_shifted():
    rng = np.random.default_rng(1)
    predicted = np.exp(1j * rng.uniform(0, 2 * np.pi, (200, 3)))
    model = np.repeat(3.0 * predicted[:, :, None], 2, axis=2)
    cross = np.ones(200, bool)
    same = kernels.finalise_model_coherence(
        kernels.model_coherence_partials(model, predicted, cross)
    )
    assert np.isclose(same, 1.0)
    shifted = model * np.exp(1j * rng.uniform(0, 2 * np.pi, (200, 1, 1)))
    low = kernels.finalise_model_coherence(
        kernels.model_coherence_partials(shifted, predicted, cross)
    )
    assert low < 0.3


def _noisy_calibrator(n_row=3000, n_chan=16, n_corr=2, sigma=2.6, seed=2):
    """A calibrator of 2-12 Jy per visibility (S/N 0.5-3 per part, as DSA-110's 0834+555),
    with a fringe across the band (an offset source), noise of ``sigma`` per part."""
    rng = np.random.default_rng(seed)
    amp = rng.uniform(2, 12, n_row)
    fringe = rng.uniform(-0.2, 0.2, n_row)[:, None] * np.arange(n_chan)
    model = (amp[:, None] * np.exp(1j * fringe))[:, :, None].repeat(n_corr, 2)
    noise = sigma * (rng.standard_normal(model.shape) + 1j * rng.standard_normal(model.shape))
    return model, noise, rng


def _monte_carlo_floor_deg(model, sigma, rng, draws=4):
    scatters = []
    for _ in range(draws):
        noisy = model + sigma * (
            rng.standard_normal(model.shape) + 1j * rng.standard_normal(model.shape)
        )
        phasors = noisy * np.conj(model) / np.abs(noisy * model)
        scatters.append(kernels.circular_std_deg(np.abs(phasors.mean())))
    return float(np.mean(scatters))


def test_thermal_phase_floor_matches_monte_carlo_in_both_passes():
    model, noise, rng = _noisy_calibrator()
    data = (model + noise).astype(np.complex64)
    n_row, _, n_corr = model.shape
    flag = np.zeros(model.shape, bool)
    weight = np.ones((n_row, n_corr))
    expected = _monte_carlo_floor_deg(model, 2.6, rng)
    alignment = kernels.finalise_phase_alignment(
        kernels.phase_alignment_partials(data, model, flag, weight, np.ones(n_row, bool))
    )
    assert alignment["data_model_phase_floor_deg"] == pytest.approx(expected, rel=0.10)
    assert alignment["data_model_phase_scatter_deg"] == pytest.approx(expected, rel=0.05)
    ant1 = np.arange(n_row) % 40
    ant2 = ant1 + 1 + (np.arange(n_row) // 40) % 8  # the floor samples one baseline in 8
    assert 0.05 < vk.noise_floor_baselines(ant1, ant2).mean() < 0.2
    partials = vk.visibility_partials(
        data, model, data, flag, weight, ant1, ant2, np.zeros(n_row, int),
        np.zeros((n_row, 3)), 1, 48, 1000.0,
    )  # fmt: skip
    metrics = vm.finalise_visibility_metrics(partials)
    assert metrics["data_model_phase_floor_deg"] == pytest.approx(expected, rel=0.10)
    assert metrics["vector_corrected_model_amp_ratio"] == pytest.approx(1.0, abs=0.02)
    assert metrics["median_corrected_model_amp_ratio"] > 1.05  # biased by noise
    excess = kernels.excess_scatter_deg(metrics["data_model_phase_scatter_deg"],
                                        metrics["data_model_phase_floor_deg"])  # fmt: skip
    assert excess < 8


def test_excess_over_the_floor_recovers_an_injected_phase_error():
    model, noise, rng = _noisy_calibrator()
    n_row, _, n_corr = model.shape
    error = np.radians(25.0) * rng.standard_normal(n_row)[:, None, None]
    data = (model * np.exp(1j * error) + noise).astype(np.complex64)
    alignment = kernels.finalise_phase_alignment(
        kernels.phase_alignment_partials(
            data, model, np.zeros(model.shape, bool), np.ones((n_row, n_corr)),
            np.ones(n_row, bool),
        )
    )  # fmt: skip
    excess = kernels.excess_scatter_deg(
        alignment["data_model_phase_scatter_deg"], alignment["data_model_phase_floor_deg"]
    )
    assert excess == pytest.approx(25.0, abs=4.0)
    assert kernels.excess_scatter_deg(30.0, float("nan")) == 30.0
    assert kernels.excess_scatter_deg(20.0, 30.0) == 0.0
