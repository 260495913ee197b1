"""DSA-110 station layout: two arms and the outriggers at the OVRO site.

Positions are local east/north/up offsets in metres from the array centre,
modelled on the public figures: an east-west arm of 51 stations (DSA001-051,
5.74 m spacing with gaps, about +-198 m), a north-south arm of 51 stations
(DSA052-102, 8.67 m spacing from 8 m to 442 m north) and 15 outriggers
(DSA103-117) out to a longest baseline of about 2.7 km.
"""

from __future__ import annotations

import numpy as np

N_STATIONS = 117
INACTIVE_STATIONS = frozenset(
    ["DSA010", "DSA021", "DSA022", "DSA023", "DSA117"] + [f"DSA{k:03d}" for k in range(52, 68)]
)

_EW_SPACING_M = 5.74
_EW_GAP_AFTER = (12, 25, 38)  # station numbers followed by a wider gap
_EW_HALF_SPAN_M = 198.0
_NS_SPACING_M = 8.67
_NS_FIRST_NORTH_M = 8.0
_OUTRIGGER_EN_M = (
    (1220.0, -310.0), (-1180.0, 420.0), (620.0, 980.0), (-540.0, -1050.0),
    (900.0, 640.0), (-860.0, 880.0), (260.0, -1240.0), (1300.0, 380.0),
    (-1320.0, -260.0), (430.0, 1260.0), (-300.0, 1180.0), (1050.0, -820.0),
    (-980.0, -700.0), (150.0, 1350.0), (700.0, -1100.0),
)  # fmt: skip


def station_name(number: int) -> str:
    return f"DSA{number:03d}"


def station_enu() -> dict[str, np.ndarray]:
    """All 117 stations: name -> (east, north, up) in metres."""
    gap = (2 * _EW_HALF_SPAN_M - 50 * _EW_SPACING_M) / len(_EW_GAP_AFTER)
    east = [0.0]
    for number in range(2, 52):
        step = _EW_SPACING_M + (gap if number - 1 in _EW_GAP_AFTER else 0.0)
        east.append(east[-1] + step)
    east = np.array(east) - _EW_HALF_SPAN_M
    positions = {}
    for k, e in enumerate(east):
        positions[station_name(k + 1)] = np.array([e, 0.0, 0.0])
    for k in range(51):
        positions[station_name(52 + k)] = np.array(
            [0.0, _NS_FIRST_NORTH_M + k * _NS_SPACING_M, 0.0]
        )
    for k, (e, n) in enumerate(_OUTRIGGER_EN_M):
        positions[station_name(103 + k)] = np.array([e, n, 0.0])
    return positions


def active_stations() -> list[str]:
    """The 96 stations present in typical data, in station order."""
    return [name for name in station_enu() if name not in INACTIVE_STATIONS]


def select_stations(n_antennas: int) -> list[str]:
    """A spread of ``n_antennas`` active stations covering both arms and the outriggers.

    Always includes the production reference antenna (DSA103) when at least
    one station is asked for; the full array when 96 are asked for.
    """
    active = active_stations()
    if n_antennas >= len(active):
        return active
    outriggers = [s for s in active if int(s[3:]) >= 103]
    ew_arm = [s for s in active if int(s[3:]) <= 51]
    ns_arm = [s for s in active if 52 <= int(s[3:]) <= 102]
    n_out = min(len(outriggers), max(1, round(n_antennas * len(outriggers) / len(active))))
    n_ew = (n_antennas - n_out + 1) // 2
    n_ns = n_antennas - n_out - n_ew
    chosen = set(_evenly_spaced(outriggers, n_out))
    chosen |= set(_evenly_spaced(ew_arm, n_ew)) | set(_evenly_spaced(ns_arm, n_ns))
    return [s for s in active if s in chosen]


def _evenly_spaced(names: list[str], count: int) -> list[str]:
    if count <= 0:
        return []
    index = np.unique(np.round(np.linspace(0, len(names) - 1, count)).astype(int))
    return [names[i] for i in index]
