"""The array an MS describes: antennas (those with data), dishes, telescope; the refant.

The ANTENNA table may list stations that never observed (the DSA-110
converter writes all 117, about 21 without rows; other converters leave empty
names at position 0,0,0). Only antennas that appear in the main table count:
kept fractions, fully flagged lists, uv extents and refant suggestions use
``Array.has_data``.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg import instrument
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.reads import read_subtable, require_ms

log = logging.getLogger(__name__)


def antenna_names(ms) -> list[str]:
    """Every ANTENNA row's name as shown to users: an unnamed antenna is ``#<index>``."""
    names = [str(n) for n in read_subtable(ms, "ANTENNA", columns=["NAME"]).NAME.values]
    return shown_names(names)


def shown_names(names) -> list[str]:
    return [name.strip() or f"#{i}" for i, name in enumerate(names)]


@dataclass(frozen=True, eq=False)
class Array:
    """What the MS says about its telescope (DSA-110 figures only where it says nothing)."""

    telescope: str
    names: tuple[str, ...]  # every ANTENNA row, unnamed ones as #index
    positions_m: np.ndarray  # (antenna, 3) ITRF
    has_data: np.ndarray  # (antenna,) bool: appears in ANTENNA1 or ANTENNA2
    dish_diameter_m: float  # median over the antennas with data
    dish_from_ms: bool  # False: the MS gave none and DSA-110's was assumed

    @property
    def with_data(self) -> np.ndarray:
        return np.flatnonzero(self.has_data)

    @property
    def names_with_data(self) -> list[str]:
        return [self.names[a] for a in self.with_data]

    def uv_max_m(self) -> float:
        """Longest baseline between antennas with data (m), a hair over for bin edges."""
        positions = self.positions_m[self.has_data]
        if len(positions) < 2:
            return 1.0
        distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
        return float(distances.max() * 1.001) or 1.0

    def describe(self) -> str:
        listed = len(self.names)
        used = int(self.has_data.sum())
        antennas = f"{used} antennas with data" + (f" of {listed} listed" if used < listed else "")
        dish = f"{self.dish_diameter_m:g} m dishes" + (
            "" if self.dish_from_ms else " (DSA-110's; the MS gives none)"
        )
        return f"{self.telescope or 'unnamed telescope'}: {antennas}, {dish}"


def array_of(ms) -> Array:
    """The array of ``ms`` (cached per MS path and modification time)."""
    path = require_ms(ms)
    return _array_of(str(path.absolute()), _mtime(path))


def _mtime(path: Path) -> float:
    return max(
        (path / "table.dat").stat().st_mtime, (path / "ANTENNA" / "table.dat").stat().st_mtime
    )


@functools.lru_cache(maxsize=32)
def _array_of(path: str, _mtime: float) -> Array:
    from casacore.tables import table

    antenna = read_subtable(path, "ANTENNA", columns=["NAME", "POSITION", "DISH_DIAMETER"])
    names = shown_names([str(n) for n in antenna.NAME.values])
    with table(path, ack=False) as main:
        present = np.union1d(np.unique(main.getcol("ANTENNA1")), np.unique(main.getcol("ANTENNA2")))
    has_data = np.zeros(len(names), bool)
    has_data[present[(present >= 0) & (present < len(names))]] = True
    dishes = (
        np.asarray(antenna.DISH_DIAMETER.values, float)[has_data]
        if "DISH_DIAMETER" in antenna
        else []
    )
    dishes = dishes[np.isfinite(dishes) & (dishes > 0)] if len(dishes) else dishes
    telescope = ""
    if (Path(path) / "OBSERVATION" / "table.dat").exists():
        observation = read_subtable(path, "OBSERVATION", columns=["TELESCOPE_NAME"])
        if observation.sizes.get("row", 0):
            telescope = str(observation.TELESCOPE_NAME.values[0]).strip()
    return Array(
        telescope=telescope,
        names=tuple(names),
        positions_m=np.asarray(antenna.POSITION.values, float),
        has_data=has_data,
        dish_diameter_m=float(np.median(dishes)) if len(dishes) else instrument.DISH_DIAMETER_M,
        dish_from_ms=bool(len(dishes)),
    )


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
    array = array_of(ms)
    names = list(array.names)
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
    if chosen is not None and array.has_data[names.index(chosen)]:
        log.info("reference antenna %s (%s)", chosen, how)
        # CASA reads a name that starts with a digit ("1b", "12") as an index or a
        # unit; such antennas, and unnamed ones, are given to it by index.
        if chosen.startswith("#") or chosen[:1].isdigit():
            return str(names.index(chosen))
        return chosen
    suggestion = names[int(np.argmax(unflagged_fraction_per_antenna(ms)))]
    if chosen is not None:
        raise ContimgError(
            f"reference antenna {chosen} ({how}) has no data in {ms}: try --refant {suggestion}"
        )
    present = array.names_with_data
    shown = ", ".join(present) if len(present) <= 24 else f"{', '.join(present[:24])}, ..."
    meaning = (
        "a DSA-110 station number" if spec.isdigit() and is_dsa110_naming(names)
        else "an antenna index" if spec.isdigit() else "a name"
    )  # fmt: skip
    raise ContimgError(
        f"reference antenna {spec!r} ({meaning}) is not in {ms}: it has {len(present)} antennas "
        "with data "
        f"({shown}); try --refant {suggestion}"
    )
