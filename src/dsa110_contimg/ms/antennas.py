"""Antenna lookups: names, and the reference antenna a user asked for."""

from __future__ import annotations

import logging
import re

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.reads import read_subtable, require_ms

log = logging.getLogger(__name__)


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


def is_dsa110_naming(names) -> bool:
    """Every antenna is named like a DSA-110 station (``DSA001`` .. ``DSA117``)."""
    return bool(names) and all(re.fullmatch(r"DSA\d{3}", n) for n in names)


def resolve_refant(ms, spec: str) -> str:
    """The antenna NAME for ``spec``: a name, a DSA station number, or an index.

    A name in the MS wins. A number means station ``DSA<number>`` on DSA-110
    data (every antenna named ``DSAnnn``: the production habit ``103`` =
    DSA103), and an antenna index on any other array. An antenna that is not
    in the MS is refused with the list of antennas present and a suggestion
    (the antenna with the most unflagged data). The choice is logged.
    """
    names = antenna_names(ms)
    spec = str(spec).strip()
    chosen = None
    if spec in names:
        chosen, how = spec, "by name"
    elif spec.isdigit() and is_dsa110_naming(names):
        station = f"DSA{int(spec):03d}"
        if station in names:
            chosen, how = station, f"DSA-110 station {int(spec)}"
    elif spec.isdigit() and int(spec) < len(names):
        chosen, how = names[int(spec)], f"antenna index {int(spec)}"
    if chosen is not None:
        log.info("reference antenna %s (%s)", chosen or f"#{spec}", how)
        return chosen
    kept = unflagged_fraction_per_antenna(ms)
    suggestion = names[int(np.argmax(kept))]
    shown = ", ".join(names) if len(names) <= 24 else f"{', '.join(names[:24])}, ..."
    meaning = (
        "a DSA-110 station number" if spec.isdigit() and is_dsa110_naming(names)
        else "an antenna index" if spec.isdigit() else "a name"
    )  # fmt: skip
    raise ContimgError(
        f"reference antenna {spec!r} ({meaning}) is not in {ms}: it has {len(names)} antennas "
        f"({shown}); try --refant {suggestion}"
    )
