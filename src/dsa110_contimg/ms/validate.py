"""Checks of a converted Measurement Set against what its files said, one verdict a line."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.ms.reads import read_subtable
from dsa110_contimg.sky.coordinates import angular_separation

PHASE_CENTRE_TOLERANCE_ARCSEC = 1.0
POSITION_TOLERANCE_M = 1e-3
# UVW lengths may exceed the longest baseline by float32 rounding only.
UVW_RELATIVE_SLACK = 1e-6


def check_converted_ms(ms, antenna_numbers, antenna_positions_m, meridian_ra_rad: dict,
                       pointing_dec_rad: float) -> list[tuple[bool, str]]:  # fmt: skip
    """(passed, line) for frequencies, phase centres, UVW lengths and antenna positions.

    ``antenna_positions_m`` (antenna, 3) ITRF of the files' antennas, whose
    ANTENNA rows are their ``antenna_numbers``.
    """
    return [
        _frequencies_ascending(ms),
        _phase_centres_at_meridian(ms, meridian_ra_rad, pointing_dec_rad),
        _uvw_within_array(ms),
        _antenna_positions(ms, antenna_numbers, antenna_positions_m),
    ]


def _frequencies_ascending(ms) -> tuple[bool, str]:
    spw = read_subtable(ms, "SPECTRAL_WINDOW", columns=["CHAN_FREQ"])
    freqs = [np.asarray(f, float) for f in spw.CHAN_FREQ.values]
    inside = all(np.all(np.diff(f) > 0) for f in freqs)
    across = all(b[0] > a[-1] for a, b in zip(freqs, freqs[1:], strict=False))
    ok = inside and across
    span = f"{len(freqs)} SPW(s), {freqs[0][0] / 1e6:.3f}-{freqs[-1][-1] / 1e6:.3f} MHz"
    return ok, ("frequencies ascending: " if ok else "frequencies NOT ascending: ") + span


def _phase_centres_at_meridian(ms, meridian_ra_rad: dict, dec: float) -> tuple[bool, str]:
    field = read_subtable(ms, "FIELD", columns=["NAME", "PHASE_DIR"])
    names = [str(n) for n in field.NAME.values]
    phase = field.PHASE_DIR.values[:, 0, :]
    unknown = [n for n in names if n not in meridian_ra_rad]
    if unknown:
        return False, f"phase centres: fields {unknown[:3]} are no integration's meridian"
    expected_ra = np.array([meridian_ra_rad[n] for n in names])
    offset = np.degrees(angular_separation(phase[:, 0], phase[:, 1], expected_ra, dec)) * 3600
    worst = float(offset.max()) if len(offset) else 0.0
    ok = worst < PHASE_CENTRE_TOLERANCE_ARCSEC
    return ok, (
        f"phase centres {'at' if ok else 'NOT at'} each integration's meridian: {len(names)} "
        f"field(s), largest offset {worst:.3f} arcsec"
    )


def _uvw_within_array(ms) -> tuple[bool, str]:
    from dsa110_contimg.ms.reads import read_visibility_datasets

    antenna = read_subtable(ms, "ANTENNA", columns=["POSITION"])
    positions = np.asarray(antenna.POSITION.values, float)
    longest = 0.0
    for ds in read_visibility_datasets(ms, ["UVW", "ANTENNA1", "ANTENNA2"], group_cols=()):
        uvw = ds.UVW.values
        a1, a2 = ds.ANTENNA1.values, ds.ANTENNA2.values
        baseline = np.linalg.norm(positions[a2] - positions[a1], axis=1)
        excess = np.linalg.norm(uvw, axis=1) - baseline * (1 + UVW_RELATIVE_SLACK) - 1e-6
        if np.any(excess > 0):
            return False, f"UVW longer than its baseline by up to {excess.max():.3g} m"
        longest = max(longest, float(baseline.max(initial=0.0)))
    return True, f"UVW lengths within the baselines (longest {longest:.1f} m)"


def _antenna_positions(ms, numbers, expected_m) -> tuple[bool, str]:
    antenna = read_subtable(ms, "ANTENNA", columns=["POSITION"])
    positions = np.asarray(antenna.POSITION.values, float)
    numbers = np.asarray(numbers, int)
    if numbers.max(initial=-1) >= len(positions):
        return (
            False,
            f"ANTENNA has {len(positions)} rows; the files number antennas up to {numbers.max()}",
        )
    worst = float(np.abs(positions[numbers] - np.asarray(expected_m, float)).max(initial=0.0))
    ok = worst < POSITION_TOLERANCE_M
    return ok, (
        f"antenna positions {'equal' if ok else 'DIFFER from'} the files' ({len(numbers)} "
        f"antennas, largest difference {worst * 1000:.3f} mm)"
    )
