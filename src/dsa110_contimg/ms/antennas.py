"""Antenna lookups: names, and the reference antenna a user asked for."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.reads import read_subtable, require_ms


def antenna_names(ms) -> list[str]:
    return [str(n) for n in read_subtable(ms, "ANTENNA", columns=["NAME"]).NAME.values]


def unflagged_fraction_per_antenna(ms) -> np.ndarray:
    """Fraction of cross-correlation rows without FLAG_ROW, per antenna (cheap columns only)."""
    from casacore.tables import table

    names = antenna_names(ms)
    with table(str(require_ms(ms)), ack=False) as main:
        ant1 = main.getcol("ANTENNA1")
        ant2 = main.getcol("ANTENNA2")
        flag_row = main.getcol("FLAG_ROW")
    cross = ant1 != ant2
    total = np.bincount(ant1[cross], minlength=len(names)) + np.bincount(
        ant2[cross], minlength=len(names)
    )
    good = cross & ~flag_row
    kept = np.bincount(ant1[good], minlength=len(names)) + np.bincount(
        ant2[good], minlength=len(names)
    )
    return np.divide(kept, total, out=np.zeros(len(names)), where=total > 0)


def resolve_refant(ms, spec: str) -> str:
    """The antenna NAME for ``spec``: a name, a DSA station number, or an index.

    ``103`` means station DSA103 when the MS has it (the production habit),
    else antenna index 103. An antenna that is not in the MS is refused with
    the list of antennas present and a suggestion (the antenna with the most
    unflagged data).
    """
    names = antenna_names(ms)
    spec = str(spec).strip()
    if spec in names:
        return spec
    if spec.isdigit():
        station = f"DSA{int(spec):03d}"
        if station in names:
            return station
        if int(spec) < len(names):
            return names[int(spec)]
    kept = unflagged_fraction_per_antenna(ms)
    suggestion = names[int(np.argmax(kept))]
    shown = ", ".join(names) if len(names) <= 24 else f"{', '.join(names[:24])}, ..."
    raise ContimgError(
        f"reference antenna {spec!r} is not in {ms}: it has {len(names)} antennas ({shown}); "
        f"try --refant {suggestion}"
    )
