"""Applying antenna gains to visibilities: what CASA's ``applycal`` computes, free of I/O.

``CORRECTED = V / (g_p conj(g_q))`` per correlation, each feed of a correlation
with its own polarisation's gain (``XY`` takes ``g_X`` of the first antenna and
``g_Y`` of the second), the gains the product of every applied table's. A
visibility whose gain is flagged in any table is flagged (``applymode='calflag'``)
and left as it was.
"""

from __future__ import annotations

import numba
import numpy as np

# Each correlation's two feeds (CASA's Stokes codes), as letters.
FEEDS_OF_CORRELATION = {5: "RR", 6: "RL", 7: "LR", 8: "LL", 9: "XX", 10: "XY", 11: "YX", 12: "YY"}


def correlation_feeds(corr_types, hands) -> np.ndarray | None:
    """(corr, 2) the gain polarisation of each correlation's two feeds, the polarisations
    being those of the solved parallel hands ``hands`` (indices into ``corr_types``), in
    order; None when a correlation's feed has no solved polarisation."""
    letters = [FEEDS_OF_CORRELATION.get(int(corr_types[h]), "?")[0] for h in hands]
    feeds = []
    for code in corr_types:
        pair = FEEDS_OF_CORRELATION.get(int(code))
        if pair is None or pair[0] not in letters or pair[1] not in letters:
            return None
        feeds.append((letters.index(pair[0]), letters.index(pair[1])))
    return np.array(feeds, np.int64)


def inverse_gains(gains: np.ndarray) -> np.ndarray:
    """``1 / g``, and 0 where ``g`` is 0 (a flagged solution)."""
    inverse = np.zeros_like(gains)
    nonzero = gains != 0
    inverse[nonzero] = 1.0 / gains[nonzero]
    return inverse


@numba.njit(cache=True, nogil=True)
def apply_gains(data, flag, ant1, ant2, time_index, inverse, feeds, corrected, flag_out):
    """Fill ``corrected`` and ``flag_out`` (both (row, chan, corr)) from ``data`` and ``flag``.

    ``inverse`` (time, ant, chan, pol): the inverse gains at the times ``time_index``
    (row,) points to, 0 where flagged; ``feeds`` (corr, 2) from :func:`correlation_feeds`.
    """
    n_row, n_chan, n_corr = data.shape
    for r in range(n_row):
        t = time_index[r]
        p = ant1[r]
        q = ant2[r]
        for c in range(n_chan):
            for k in range(n_corr):
                g = inverse[t, p, c, feeds[k, 0]] * np.conj(inverse[t, q, c, feeds[k, 1]])
                if g == 0:
                    corrected[r, c, k] = data[r, c, k]
                    flag_out[r, c, k] = True
                else:
                    corrected[r, c, k] = data[r, c, k] * g
                    flag_out[r, c, k] = flag[r, c, k]
