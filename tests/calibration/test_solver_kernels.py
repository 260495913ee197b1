"""The native solver's kernels against direct numerical solves on random problems."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares

from dsa110_contimg.calibration import solver_kernels as k


def _problem(seed, n_ant, noise, zero_fraction):
    rng = np.random.default_rng(seed)
    gains = (1 + 0.3 * rng.standard_normal(n_ant)) * np.exp(1j * rng.uniform(-np.pi, np.pi, n_ant))
    weight = rng.uniform(0.5, 2.0, (n_ant, n_ant))
    weight = np.triu(weight, 1) * (rng.uniform(size=(n_ant, n_ant)) >= zero_fraction)
    weight = weight + weight.T
    vis = np.outer(gains, gains.conj()) + noise * (
        rng.standard_normal((n_ant, n_ant)) + 1j * rng.standard_normal((n_ant, n_ant))
    ) / np.sqrt(np.where(weight > 0, weight, 1))
    vis = np.triu(vis, 1)
    vis = vis + vis.conj().T
    return gains, vis, weight


def _cost(g, vis, weight):
    upper = np.triu(np.ones(vis.shape, bool), 1)
    return float((weight * np.abs(vis - np.outer(g, g.conj())) ** 2)[upper].sum())


def _direct(vis, weight, phase_only, start):
    """scipy least squares over the gains (or phases), from ``start``."""
    n = len(start)
    p, q = np.triu_indices(n, 1)
    keep = weight[p, q] > 0
    p, q = p[keep], q[keep]
    root = np.sqrt(weight[p, q])

    def gains_of(x):
        return np.exp(1j * x) if phase_only else x[:n] + 1j * x[n:]

    def residual(x):
        g = gains_of(x)
        r = root * (vis[p, q] - g[p] * np.conj(g[q]))
        return np.concatenate([r.real, r.imag])

    x0 = np.angle(start) if phase_only else np.concatenate([start.real, start.imag])
    fit = least_squares(residual, x0, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return gains_of(fit.x)


def _referenced(g):
    return g * np.conj(g[0]) / abs(g[0])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31),
    n_ant=st.integers(4, 14),
    noise=st.floats(0.0, 0.3),
    zero_fraction=st.floats(0.0, 0.3),
    phase_only=st.booleans(),
)
def test_stefcal_finds_the_least_squares_solution(seed, n_ant, noise, zero_fraction, phase_only):
    truth, vis, weight = _problem(seed, n_ant, noise, zero_fraction)
    usable = k.enforce_min_baselines(weight[None], 3)
    if not usable.all():
        return  # a sparse draw: minblperant has its own test
    ours, iterations = k.solve_gains(vis[None], weight[None], usable, phase_only, 500, 1e-12)
    ours = ours[0]
    start = np.exp(1j * np.angle(truth)) if phase_only else truth
    direct = _direct(vis, weight, phase_only, start)
    assert iterations[0] < 500
    # at least as good as the direct solve; the same solution to within the flatness of
    # the minimum (a phase-only problem with noise: scipy stops ~1e-4 rad short)
    assert _cost(ours, vis, weight) <= _cost(direct, vis, weight) * (1 + 1e-6) + 1e-12
    assert np.allclose(_referenced(ours), _referenced(direct), rtol=1e-3, atol=1e-3)
    if phase_only:
        assert np.allclose(np.abs(ours), 1.0)


def test_noiseless_gains_are_recovered_exactly():
    truth, vis, weight = _problem(1, 20, 0.0, 0.0)
    usable = np.ones((1, 20), bool)
    gains, _ = k.solve_gains(vis[None], weight[None], usable, False, 200, 1e-14)
    assert np.allclose(_referenced(gains[0]), _referenced(truth), atol=1e-10)


def test_accumulate_is_the_weighted_model_division():
    """Per row and output channel: a = sum w V conj(M), b = sum w |M|^2 over its channels,
    for the parallel hands only, the earlier tables' gains divided out."""
    rng = np.random.default_rng(3)
    n_row, n_chan, n_corr, n_ant, n_time = 60, 5, 4, 6, 3
    hands = np.array([0, 3])  # XX and YY of XX XY YX YY
    ant1, ant2 = (rng.integers(0, n_ant, n_row) for _ in range(2))
    shape = (n_row, n_chan, n_corr)
    data, model = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape) for _ in range(2))
    weight = rng.uniform(0.1, 1.0, shape)
    flag = rng.uniform(size=shape) < 0.2
    prior = np.exp(1j * rng.uniform(-3, 3, (n_time, n_ant, n_chan, len(hands))))
    prior[1, 2, 3, 0] = 0  # a flagged earlier solution flags the data it applies to
    row_time = rng.integers(0, n_time, n_row)
    times = 100.0 + 10.0 * row_time
    block = rng.integers(-1, 2, n_row)
    chan_out = np.array([0, 0, 1, 1, -1])
    for calmode in ("ap", "p", "a"):
        sums = [np.zeros((2, n_ant, n_ant, len(hands), 2), t) for t in (complex, float, float, int)]
        per_block = [np.zeros(2), np.zeros(2)]
        k.accumulate(data, model, weight, flag, ant1, ant2, times, block, chan_out, hands, prior,
                     row_time, k.CALMODES[calmode], *sums, *per_block)  # fmt: skip
        sums = list(k.both_triangles(*sums))
        expected = [np.zeros_like(x) for x in sums]
        expected_block = [np.zeros(2), np.zeros(2)]
        for r in range(n_row):
            if block[r] < 0 or ant1[r] == ant2[r]:
                continue
            for out in (0, 1):
                for j, corr in enumerate(hands):
                    g = prior[row_time[r], ant1[r], :, j] * np.conj(
                        prior[row_time[r], ant2[r], :, j]
                    )
                    use = (chan_out == out) & ~flag[r, :, corr] & (g != 0)
                    if not use.any():
                        continue
                    v = data[r, use, corr] / g[use]
                    a = (weight[r, use, corr] * v * np.conj(model[r, use, corr])).sum()
                    b = (weight[r, use, corr] * np.abs(model[r, use, corr]) ** 2).sum()
                    expected_block[0][block[r]] += b * times[r]
                    expected_block[1][block[r]] += b
                    if calmode == "p":  # unit amplitude, weight times amplitude squared
                        amp = abs(a / b)
                        a, b = a / abs(a) * b * amp**2, b * amp**2
                    if calmode == "a":  # the amplitude, the same weight
                        a = abs(a)
                    for p, q, value in ((ant1[r], ant2[r], a), (ant2[r], ant1[r], np.conj(a))):
                        index = (block[r], out, j, p, q)
                        expected[0][index] += value
                        expected[1][index] += b
                        expected[2][index] += abs(a) ** 2 / b
                        expected[3][index] += 1
        for got, want in zip(sums + per_block, expected + expected_block, strict=True):
            assert np.allclose(got, want)


def test_min_baselines_removes_antennas_until_stable():
    weight = np.zeros((1, 5, 5))
    for p, q in [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4)]:
        weight[0, p, q] = weight[0, q, p] = 1.0
    # antenna 4 has one baseline; once it goes, antenna 3 has one too
    assert k.enforce_min_baselines(weight, 2)[0].tolist() == [True, True, True, False, False]


def test_snr_matches_its_definition_and_scales_with_noise():
    """With one integration per baseline, the chi-squared is that of the averaged data."""
    truth, vis, weight = _problem(5, 12, 0.05, 0.0)
    usable = np.ones((1, 12), bool)

    def snr_of(vis):
        gains, _ = k.solve_gains(vis[None], weight[None], usable, False, 300, 1e-12)
        sums = (weight * vis)[None], weight[None], (weight * np.abs(vis) ** 2)[None]
        count = (weight > 0).astype(int)[None]
        return gains[0], k.solution_snr(*sums, count, gains, usable, np.zeros(1, int))[0]

    gains, snr = snr_of(vis)
    upper = np.triu(np.ones((12, 12), bool), 1)
    chi2 = (weight * np.abs(vis - np.outer(gains, gains.conj())) ** 2)[upper].sum()
    k2 = chi2 / (2 * (upper.sum() - 12))
    hessian = (weight * np.abs(gains[None, :]) ** 2).sum(axis=1)
    assert np.allclose(snr, np.abs(gains) / np.sqrt(2 * k2 / hessian))
    _, noisier, _ = _problem(5, 12, 0.5, 0.0)
    assert np.median(snr_of(noisier)[1]) < np.median(snr) / 5


def test_reference_phase_uses_the_first_good_antenna_of_the_list():
    gains = np.exp(1j * np.array([[0.3, 1.0, -2.0], [0.5, 0.7, 0.1]]))
    ok = np.array([[True, False, True], [True, True, True]])
    out = k.reference_phase(gains, ok, [1, 2])
    assert np.isclose(np.angle(out[0, 2]), 0) and np.isclose(np.angle(out[1, 1]), 0)
    assert np.allclose(np.abs(out), 1)


def test_solnorm_gives_unit_power_and_zero_mean_phase():
    rng = np.random.default_rng(2)
    gains = (2 + 0.2 * rng.standard_normal((1, 16, 2, 3))) * np.exp(
        1j * (0.8 + 0.1 * rng.standard_normal((1, 16, 2, 3)))
    )
    ok = rng.uniform(size=gains.shape) > 0.2
    out = k.normalise_over_channels(gains, ok)
    power = np.where(ok, np.abs(out) ** 2, 0).sum(axis=1) / ok.sum(axis=1)
    assert np.allclose(power, 1)
    phasor = np.where(ok, out / np.abs(out), 0).sum(axis=1)
    assert np.allclose(np.angle(phasor), 0, atol=1e-12)


def test_fillgaps_fills_interior_gaps_up_to_the_limit():
    chans = np.arange(12)
    gains = ((1 + 0.05 * chans) * np.exp(0.1j * chans))[None, :, None, None]
    ok = np.ones(gains.shape, bool)
    ok[0, 3:5] = False  # a gap of 2: filled
    ok[0, 7:10] = False  # a gap of 3: left
    ok[0, 0] = False  # an edge: left
    filled, filled_ok = k.fill_channel_gaps(np.where(ok, gains, 0), ok, 2)
    assert filled_ok[0, 3:5].all() and not filled_ok[0, 7:10].any() and not filled_ok[0, 0].any()
    assert np.allclose(filled[0, 3:5], gains[0, 3:5])


def test_time_interpolation_is_linear_in_amplitude_and_phase():
    times = np.array([0.0, 10.0, 20.0])
    values = np.array([1.0, 2 * np.exp(1j * 3.0), 3 * np.exp(-1j * 3.0)])[:, None]
    ok = np.array([True, True, False])[:, None]
    at = np.array([-5.0, 5.0, 10.0, 15.0, 25.0])
    out, out_ok = k.interpolate_in_time(times, values, ok, at, "linear")
    # a flagged slot flags what it brackets, as CASA applies it; phase takes the short way
    assert out_ok[:, 0].tolist() == [True, True, True, False, False]
    assert np.allclose(out[:3, 0], [1.0, 1.5 * np.exp(1.5j), 2 * np.exp(3j)])
    assert np.isclose(out[3, 0], 2.5 * np.exp(1j * (3.0 + (2 * np.pi - 6.0) / 2)))
    nearest, nearest_ok = k.interpolate_in_time(times, values, ok, at, "nearest")
    assert np.allclose(nearest[:3, 0], [1.0, 1.0, 2 * np.exp(3j)])
    assert nearest_ok[:, 0].tolist() == [True, True, True, True, False]


def _casa_slot(times, t, mode):
    """CASA's CTTimeInterp1 registration, element by element: (lo, hi, frac)."""
    n = len(times)
    if n == 1 or t <= times[0]:
        return 0, 0, 0.0
    if t >= times[-1]:
        return n - 1, n - 1, 0.0
    i = int(np.flatnonzero(times <= t)[-1])
    if times[i] == t:
        return i, i, 0.0
    if mode == "nearest":
        j = i + 1 if times[i + 1] - t < t - times[i] else i
        return j, j, 0.0
    return i, i + 1, (t - times[i]) / (times[i + 1] - times[i])


def test_interpolate_in_time_follows_casa_slots_element_by_element():
    rng = np.random.default_rng(11)
    times = np.sort(rng.uniform(0, 100, 7))[::-1].copy()  # any order
    values = rng.uniform(0.5, 2, (7, 5, 3)) * np.exp(1j * rng.uniform(-3, 3, (7, 5, 3)))
    ok = rng.uniform(size=(7, 5, 3)) < 0.7
    at = np.concatenate([[-10.0, 150.0], rng.uniform(0, 100, 20), times[:3]])
    order = np.argsort(times)
    sorted_times, sorted_values, sorted_ok = times[order], values[order], ok[order]
    for mode in ("linear", "nearest"):
        out, out_ok = k.interpolate_in_time(times, values, ok, at, mode)
        for i, t in enumerate(at):
            lo, hi, frac = _casa_slot(sorted_times, t, mode)
            a, b = sorted_values[lo], sorted_values[hi]
            want = (np.abs(a) * (1 - frac) + np.abs(b) * frac) * np.exp(
                1j * (np.angle(a) + np.angle(b / a) * frac)
            )
            assert np.allclose(out[i], want)
            assert (out_ok[i] == (sorted_ok[lo] & sorted_ok[hi])).all()


def test_flagged_channels_are_filled_from_the_good_ones():
    """CASA's frequency resampling: flagged channels interpolated (the nearest beyond the
    ends) and unflagged; a series without a good channel stays flagged."""
    chans = np.arange(8)
    truth = (1 + 0.1 * chans) * np.exp(0.3j * chans)
    values = np.tile(truth[None, None, :, None], (1, 2, 1, 1))
    ok = np.ones(values.shape, bool)
    ok[0, 0, [0, 3, 4]] = False
    ok[0, 1] = False
    filled, filled_ok = k.fill_flagged_channels(np.where(ok, values, 0), ok)
    assert filled_ok[0, 0].all() and not filled_ok[0, 1].any()
    assert np.allclose(filled[0, 0, 1:, 0], truth[1:])
    assert np.isclose(filled[0, 0, 0, 0], truth[1])


def test_solution_blocks_follow_casa_grid():
    t = 12.884902 * np.arange(24)
    fields = np.arange(24)
    blocks = k.solution_blocks(t, fields, fields + 1, 60.0, True, True)
    # CASA's 60 s intervals of this layout (read from its table): 5, 5, 4, 5, 5 integrations
    assert np.bincount(blocks).tolist() == [5, 5, 4, 5, 5]
    assert k.solution_blocks(t, fields, fields + 1, np.inf, True, True).max() == 0
    assert k.solution_blocks(t, fields, fields + 1, 30.0, False, False).tolist() == list(range(24))


def test_data_without_antenna_structure_is_degenerate_or_unconverged():
    """Purely imaginary antisymmetric 'visibilities' (real data against an imaginary
    model): no gains explain them; the solve must not pass for a solution."""
    rng = np.random.default_rng(7)
    n = 16
    a = np.triu(rng.standard_normal((n, n)), 1)
    vis = 1j * (a - a.T)
    weight = np.ones((n, n)) - np.eye(n)
    usable = np.ones((1, n), bool)
    gains, iterations = k.solve_gains(vis[None], weight[None], usable, False, 200, 1e-10)
    assert iterations[0] == 200 or k.degenerate(gains, usable)[0]
    truth, good, w = _problem(4, n, 0.1, 0.0)
    gains, iterations = k.solve_gains(good[None], w[None], usable, False, 200, 1e-10)
    assert iterations[0] < 200 and not k.degenerate(gains, usable)[0]


def test_apply_gains_divides_each_feed_by_its_own_polarisation():
    """CORRECTED = V / (g_p^a conj(g_q^b)) for correlation (a, b) of XX XY YX YY, against
    numpy; a zero (flagged) gain flags the visibility and leaves it as it was."""
    from dsa110_contimg.calibration import apply_kernels

    rng = np.random.default_rng(5)
    n_row, n_chan, n_ant, n_time = 40, 3, 5, 2
    corr = np.array([9, 10, 11, 12])
    feeds = apply_kernels.correlation_feeds(corr, [0, 3])
    assert feeds.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    data = rng.standard_normal((n_row, n_chan, 4)) + 1j * rng.standard_normal((n_row, n_chan, 4))
    flag = rng.uniform(size=data.shape) < 0.1
    gains = rng.uniform(0.5, 2, (n_time, n_ant, n_chan, 2)) * np.exp(
        1j * rng.uniform(-3, 3, (n_time, n_ant, n_chan, 2))
    )
    gains[1, 2, 1, 1] = 0
    ant1, ant2 = rng.integers(0, n_ant, n_row), rng.integers(0, n_ant, n_row)
    row_time = rng.integers(0, n_time, n_row)
    ant1[0], row_time[0] = 2, 1  # a row the flagged gain applies to
    corrected, flag_out = np.empty_like(data), np.empty_like(flag)
    apply_kernels.apply_gains(data, flag, ant1, ant2, row_time,
                              apply_kernels.inverse_gains(gains), feeds, corrected,
                              flag_out)  # fmt: skip
    for k_corr, (a, b) in enumerate(feeds):
        g = gains[row_time, ant1, :, a] * np.conj(gains[row_time, ant2, :, b])
        bad = g == 0
        want = np.where(bad, data[:, :, k_corr], data[:, :, k_corr] / np.where(bad, 1, g))
        assert np.allclose(corrected[:, :, k_corr], want)
        assert (flag_out[:, :, k_corr] == (flag[:, :, k_corr] | bad)).all()
    assert flag_out[0, 1, 2:].all()  # YX and YY of the row with the flagged Y gain
    assert apply_kernels.correlation_feeds(np.array([9, 10]), [0]) is None
