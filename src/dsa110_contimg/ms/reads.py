"""Lazy reads of Measurement Sets through dask-ms.

Datasets are grouped by FIELD_ID and DATA_DESC_ID, so each one holds rows of
a single phase centre and a single spectral window; dimensions follow dask-ms
(``row``, ``chan``, ``corr``). Nothing is computed here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from daskms import xds_from_ms

from dsa110_contimg.errors import ContimgError

# A DSA-110 chunk of DATA (28,000 rows x 48 channels x 2 correlations, complex64) is
# 21.5 MB, under glibc's 32 MiB ceiling for heap allocations: a worker reuses freed
# memory for the next chunk instead of mapping (and faulting in) fresh pages.
DEFAULT_ROW_CHUNK = 28_000
BALANCED_ROW_CHUNK_TARGET = 60_000
GROUP_COLS = ("FIELD_ID", "DATA_DESC_ID")


def require_ms(path: str | os.PathLike) -> Path:
    """The path of an existing Measurement Set, or a ContimgError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise ContimgError(f"{path} does not exist")
    if not path.is_dir() or not (path / "table.dat").exists():
        raise ContimgError(f"{path} is not a Measurement Set (no table.dat)")
    for sub in ("ANTENNA", "SPECTRAL_WINDOW", "FIELD", "DATA_DESCRIPTION", "POLARIZATION"):
        if not (path / sub / "table.dat").exists():
            raise ContimgError(f"{path} is not a Measurement Set (no {sub} subtable)")
    _require_readable_description(path)
    return path


def _require_readable_description(path: Path) -> None:
    """The main table's description opens (a cut ``table.dat`` is refused here, in one line)."""
    from casacore.tables import table

    try:
        table(str(path), ack=False).close()
    except RuntimeError as err:
        raise ContimgError(
            f"{path} cannot be opened ({table_failure_text(err)}): the MS is damaged or truncated"
        ) from None


def table_failure_text(err: BaseException) -> str | None:
    """The line of a casacore error that says what failed; None if it is not a table error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    markers = ("FilebufIO", "BucketFile", "readBlock", "Table", "table", "StMan", "TaQL")
    relevant = [line for line in lines if "::" in line or any(m in line for m in markers)]
    if not relevant:
        return None
    return relevant[-1]


@contextlib.contextmanager
def read_locked(path):
    """A python-casacore table of ``path`` open for reading, a read lock held.

    dask-ms opens tables with user locking, and while one of its table objects
    is alive in this process (until its graph is collected) every other opening
    of that table shares the mode: a read without a lock then fails ("should be
    locked when using UserLocking"). Holding the lock makes the read safe in
    either case.
    """
    from casacore.tables import table

    with table(str(path), ack=False) as opened:
        opened.lock(write=False)
        try:
            yield opened
        finally:
            opened.unlock()


def main_columns(path: str | os.PathLike) -> list[str]:
    """Column names of the main table (cheap: reads only the table description)."""
    from casacore.tables import table

    with table(str(require_ms(path)), ack=False) as main:
        return list(main.colnames())


def require_columns(path: str | os.PathLike, columns) -> None:
    present = set(main_columns(path))
    missing = [c for c in columns if c not in present]
    if missing:
        raise ContimgError(f"{path} has no {', '.join(missing)} column(s)")


def read_visibility_datasets(
    path, columns, row_chunk: int = DEFAULT_ROW_CHUNK, group_cols=GROUP_COLS
):
    """One xarray dataset per group (default: FIELD_ID, DATA_DESC_ID), ``columns`` lazy.

    Whole-MS reductions group by DATA_DESC_ID only and split fields inside
    each chunk: DSA-110's 24 fields x 16 SPWs make 384 small groups whose
    per-read overhead would double the cost of reading the bytes.
    """
    path = require_ms(path)
    require_columns(path, columns)
    xds_list = xds_from_ms(
        str(path),
        columns=list(columns),
        group_cols=list(group_cols),
        chunks={"row": row_chunk},
    )
    # dask-ms leaves out a column whose first cell it cannot read.
    unreadable = sorted({c for ds in xds_list for c in columns if c not in ds.data_vars})
    if unreadable:
        raise ContimgError(
            f"{path}: column(s) {', '.join(unreadable)} exist but cannot be read: "
            "the MS is damaged or truncated"
        )
    return xds_list


def balanced_row_chunk(path, target: int = BALANCED_ROW_CHUNK_TARGET) -> int:
    """A row chunk near ``target`` that splits every DATA_DESC_ID group into equal chunks.

    One size serves every group; sized on the largest group, a DSA-110 SPW of
    111,744 rows becomes two chunks of 55,872 rather than 100,000 + 11,744,
    whose small remainder leaves a core idle at the end of each SPW.
    """
    with read_locked(require_ms(path)) as main:
        counts = np.bincount(main.getcol("DATA_DESC_ID")) if main.nrows() else np.zeros(1)
    largest = max(int(counts.max()), 1)
    n_chunks = max(1, -(-largest // target))
    return max(1, -(-largest // n_chunks))


def compute_reading(collections, scheduler=None):
    """``dask.compute`` of graphs that read through dask-ms, reads overlapping the kernels.

    A task reading through dask-ms holds a pool thread while the table's own
    I/O thread works, so the default local pool gets one thread more than the
    cores. A scheduler given here or set in dask's config (``synchronous``
    inside the calibration's worker processes) or an active distributed
    client is used as it is.
    """
    import dask

    if scheduler is None and dask.config.get("scheduler", None) is None and not _has_client():
        return dask.compute(collections, scheduler="threads", num_workers=(os.cpu_count() or 1) + 1)
    return dask.compute(collections, scheduler=scheduler)


def _has_client() -> bool:
    try:
        from distributed import default_client

        default_client()
    except (ImportError, ValueError):
        return False
    return True


def data_units(path) -> str:
    """DATA's unit (its QuantumUnits keyword); empty when the MS does not say."""
    from casacore.tables import table

    with table(str(path), ack=False) as main:
        if "DATA" not in main.colnames():
            return ""
        keywords = main.getcolkeywords("DATA")
    units = keywords.get("QuantumUnits")
    if isinstance(units, str):
        units = [units]
    units = [str(u).strip() for u in (units if units is not None else []) if str(u).strip()]
    return units[0] if units else ""


def weights_meaningful(path, sample_rows: int = 100_000) -> bool:
    """WEIGHT holds positive finite values (sampled from the first rows).

    Some writers leave WEIGHT negative, zero or NaN everywhere (the ATA's
    pyuvdata-written MS: -1.2e12, SIGMA NaN); such weights say nothing and
    the data are then weighted equally.
    """
    with read_locked(path) as main:
        if "WEIGHT" not in main.colnames() or main.nrows() == 0:
            return False
        weight = main.getcol("WEIGHT", 0, min(sample_rows, main.nrows()))
    return bool(np.any(np.isfinite(weight) & (weight > 0)))


def read_subtable(path, name: str, columns=None):
    """A subtable as one xarray dataset (computed: subtables are small).

    Columns are read whole where their cells share a shape, else row by row:
    a valid MS may hold rows of different shapes (two POLARIZATION rows with
    2 and 4 correlations, SPWs of different widths). Such a column becomes an
    object array of per-row arrays (dims ``row`` only).
    """
    import xarray as xr
    from casacore.tables import table

    path = require_ms(path)
    try:
        sub = table(str(path / name), ack=False)
    except RuntimeError as err:
        raise ContimgError(f"{path}: the {name} subtable cannot be opened ({err})") from None
    with sub:
        names = list(columns) if columns else list(sub.colnames())
        missing = [c for c in names if c not in sub.colnames()]
        if missing:
            raise ContimgError(f"{path}: the {name} subtable has no {', '.join(missing)} column")
        variables = {}
        for column in names:
            values = _read_whole_or_per_row(sub, column)
            dims = ("row",) + tuple(f"{column}-{i}" for i in range(1, values.ndim))
            variables[column] = (dims, values)
        return xr.Dataset(variables)


def _read_whole_or_per_row(sub, column: str) -> np.ndarray:
    n_rows = sub.nrows()
    if n_rows == 0:
        return np.empty(0)
    try:
        return np.asarray(sub.getcol(column))
    except RuntimeError:
        pass
    cells = [
        np.asarray(sub.getcell(column, row)) if sub.iscelldefined(column, row) else np.empty(0)
        for row in range(n_rows)
    ]
    if len({c.shape for c in cells}) == 1:
        return np.stack(cells)
    ragged = np.empty(n_rows, dtype=object)
    for row, cell in enumerate(cells):
        ragged[row] = cell
    return ragged


def subtable_stamp(ms, names=("FIELD", "SPECTRAL_WINDOW", "ANTENNA")) -> tuple:
    """What changes when one of the subtables ``names`` is rewritten (file, size, mtime)."""
    stamp = []
    for name in names:
        folder = Path(ms) / name
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                info = f.stat()
                stamp.append((name, f.name, info.st_size, info.st_mtime_ns))
    return tuple(stamp)


def fixed_j2000_phase_centres(path) -> bool:
    """True when every PHASE_DIR and the UVW are plain J2000 (no per-row frames, no motion)."""
    from casacore.tables import table

    path = require_ms(path)
    with table(str(path), ack=False) as main:
        uvw_frame = main.getcolkeywords("UVW").get("MEASINFO", {}).get("Ref")
    with table(str(path / "FIELD"), ack=False) as field:
        phase_frame = field.getcolkeywords("PHASE_DIR").get("MEASINFO", {}).get("Ref")
        moving = field.nrows() and bool(np.any(field.getcol("NUM_POLY") != 0))
    return uvw_frame == "J2000" and phase_frame == "J2000" and not moving


def spw_of_ddid(path) -> np.ndarray:
    """SPECTRAL_WINDOW_ID of each DATA_DESC_ID row."""
    return read_subtable(path, "DATA_DESCRIPTION").SPECTRAL_WINDOW_ID.values


# CORR_TYPE codes (casacore Stokes enum) that hold Stokes I for an unpolarised
# source: I itself and the parallel hands RR, LL, XX, YY.
PARALLEL_HAND_CODES = frozenset({1, 5, 8, 9, 12})


def corr_types_of_ddid(path) -> list[np.ndarray]:
    """CORR_TYPE codes of each DATA_DESC_ID row, read row by row.

    POLARIZATION rows may differ in shape (one row with 2 correlations,
    another with 4), which a whole-column read refuses.
    """
    from casacore.tables import table

    path = require_ms(path)
    with table(str(path / "DATA_DESCRIPTION"), ack=False) as ddid:
        pol_ids = ddid.getcol("POLARIZATION_ID")
    with table(str(path / "POLARIZATION"), ack=False) as pol:
        return [np.asarray(pol.getcell("CORR_TYPE", int(i)), dtype=int) for i in pol_ids]


CORR_NAMES = {1: "I", 5: "RR", 6: "RL", 7: "LR", 8: "LL", 9: "XX", 10: "XY", 11: "YX", 12: "YY"}


def require_parallel_hands(path, what: str) -> None:
    """Refuse an MS none of whose correlations is a parallel hand (Stokes I lives there)."""
    types = corr_types_of_ddid(path)
    if not any(int(c) in PARALLEL_HAND_CODES for row in types for c in row):
        present = sorted({CORR_NAMES.get(int(c), str(c)) for row in types for c in row})
        raise ContimgError(
            f"{path} has no parallel-hand correlation ({' '.join(present)} only): {what} needs "
            "XX/YY or RR/LL, where an unpolarised calibrator's flux is"
        )


def chan_freq_hz(path) -> list[np.ndarray]:
    """Channel frequencies (Hz) of each SPW, as a list indexed by SPW id."""
    spw = read_subtable(path, "SPECTRAL_WINDOW", columns=["CHAN_FREQ", "NUM_CHAN"])
    return [row[: int(n)] for row, n in zip(spw.CHAN_FREQ.values, spw.NUM_CHAN.values, strict=True)]


def visibility_bytes(ms, spws) -> int:
    """Bytes of DATA, FLAG and WEIGHT in the rows of ``spws``: what one solve reads."""
    from casacore.tables import taql

    ddids = [i for i, s in enumerate(spw_of_ddid(ms)) if s in set(spws)]
    with read_locked(ms) as main:  # noqa: F841 - taql reads $main
        selected = taql(f"select from $main where DATA_DESC_ID IN [{','.join(map(str, ddids))}]")
        n_rows = selected.nrows()
        if n_rows == 0:
            return 0
        n_chan, n_corr = selected.getcell("DATA", 0).shape
    return int(n_rows * (n_chan * n_corr * (8 + 1) + n_corr * 4))


def unflagged_cross_fraction(ms, fields=()) -> float:
    """Unflagged fraction of the cross-correlations (of ``fields``, else all)."""
    from casacore.tables import taql

    with read_locked(ms) as main:  # noqa: F841 - taql reads $main
        query = "ANTENNA1 != ANTENNA2 && !FLAG_ROW"
        if fields:
            query += f" && FIELD_ID IN [{','.join(str(int(f)) for f in fields)}]"
        selected = taql(f"select FLAG from $main where {query}")
        if selected.nrows() == 0:
            return 0.0
        flags = selected.getcol("FLAG")
    return float(1.0 - flags.mean())


def usable_baselines(ms, fields, columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uv length m, FIELD_ID, non-finite count) of each cross-correlation row of
    ``fields`` with an unflagged visibility; the count is of unflagged NaN or
    infinite values in ``columns`` (column names)."""
    from casacore.tables import taql

    non_finite = " + ".join(f"ntrue((isnan({c}) || isinf({c})) && !FLAG)" for c in columns)
    with read_locked(ms) as main:  # noqa: F841 - taql reads $main
        rows = taql(
            f"select UVW, FIELD_ID, {non_finite} as NON_FINITE from $main "
            "where ANTENNA1 != ANTENNA2 && !FLAG_ROW && !all(FLAG) "
            f"&& FIELD_ID IN [{','.join(str(int(f)) for f in fields)}]"
        )
        if not rows.nrows():
            return np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
        uvw, field_ids, bad = rows.getcol("UVW"), rows.getcol("FIELD_ID"), rows.getcol("NON_FINITE")
    return np.hypot(uvw[:, 0], uvw[:, 1]), field_ids, bad


def time_range(ms) -> tuple[float, float]:
    """(first, last) integration midpoint, MJD seconds (main table TIME)."""
    with read_locked(ms) as main:
        if main.nrows() == 0:
            raise ContimgError(f"{ms} has no rows")
        times = main.getcol("TIME")
    return float(times.min()), float(times.max())
