"""CASA calibration tables: what they are, their solutions, merging per-SPW tables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.antennas import shown_names
from dsa110_contimg.ms.publish import publish_directory

# CASA's interpolation for applying each table type (time; frequency after a comma).
APPLY_INTERP = {"B": "nearest,linear", "G": "linear", "T": "linear", "K": "nearest"}


@dataclass(frozen=True)
class CaltableInfo:
    path: str
    kind: str  # "B", "G", "K", ...
    spws: tuple[int, ...]  # SPWs that hold solutions
    n_antennas: int
    n_spw_rows: int  # rows of its SPECTRAL_WINDOW subtable (the MS it came from)


def require_caltable(path) -> Path:
    path = Path(path)
    if not (path / "table.dat").exists():
        raise ContimgError(f"caltable {path} does not exist (or is not a table)")
    return path


def caltable_info(path) -> CaltableInfo:
    from casacore.tables import table

    path = require_caltable(path)
    with table(str(path), ack=False) as cal:
        keywords = cal.getkeywords()
        if "VisCal" not in keywords:
            raise ContimgError(f"{path} is not a CASA calibration table (no VisCal keyword)")
        kind = str(keywords["VisCal"]).split()[0]
        spws = tuple(sorted({int(s) for s in cal.getcol("SPECTRAL_WINDOW_ID")}))
    with table(str(path / "ANTENNA"), ack=False) as ant:
        n_antennas = ant.nrows()
    with table(str(path / "SPECTRAL_WINDOW"), ack=False) as spw:
        n_spw_rows = spw.nrows()
    return CaltableInfo(str(path), kind, spws, n_antennas, n_spw_rows)


def check_caltable_matches(info: CaltableInfo, n_antennas: int, n_spw: int, spws) -> None:
    """Refuse a table from another MS (antennas or spectral setup differ)."""
    if info.n_antennas != n_antennas:
        raise ContimgError(
            f"caltable {info.path} has {info.n_antennas} antennas but the MS has {n_antennas}: "
            "it was solved on another array"
        )
    if info.n_spw_rows != n_spw:
        raise ContimgError(
            f"caltable {info.path} knows {info.n_spw_rows} SPWs but the MS has "
            f"{n_spw}: it was solved on another spectral setup"
        )
    missing = sorted(set(spws) - set(info.spws))
    combined_over_spw = len(info.spws) == 1 and info.kind != "B"
    if missing and not combined_over_spw:
        raise ContimgError(
            f"caltable {info.path} has no solutions for SPW(s) {missing}; "
            f"it covers {list(info.spws)}"
        )


def caltable_chan_freq_hz(path) -> dict[int, np.ndarray]:
    """Channel frequencies (Hz) of each SPW row of a caltable's SPECTRAL_WINDOW, read per row.

    Rows may differ in shape, so cells are read one at a time.
    """
    from casacore.tables import table

    with table(str(Path(path) / "SPECTRAL_WINDOW"), ack=False) as spw:
        return {row: np.atleast_1d(spw.getcell("CHAN_FREQ", row)) for row in range(spw.nrows())}


def check_bandpass_channels(info: CaltableInfo, ms_chan_freq_hz, spws, chanbin: int = 1) -> None:
    """Refuse a bandpass whose channels are not the MS's for the SPWs applied.

    ``ms_chan_freq_hz``: the MS's channel frequencies per SPW (Hz). A table's
    SPW matches when it has the MS's channels (frequencies within 1 % of a
    channel), or, when the recipe averages ``chanbin`` > 1 channels before
    solving (``--fast``), when each of its channels is the mean of
    ``chanbin`` of the MS's (applied by interpolation in frequency). Anything
    else was solved on another spectral setup.
    """
    if info.kind != "B":
        return
    table_freqs = caltable_chan_freq_hz(info.path)
    for spw in spws:
        ms_freq = np.asarray(ms_chan_freq_hz[spw], dtype=float)
        cal_freq = np.asarray(table_freqs.get(spw, np.empty(0)), dtype=float)
        n_ms, n_cal = ms_freq.size, cal_freq.size
        width = abs(ms_freq[-1] - ms_freq[0]) / (n_ms - 1) if n_ms > 1 else 1e3
        tolerance = 0.01 * width
        expected = None
        if n_cal == n_ms:
            expected = ms_freq
        elif chanbin > 1 and n_cal == -(-n_ms // chanbin):
            groups = [ms_freq[i : i + chanbin] for i in range(0, n_ms, chanbin)]
            expected = np.array([g.mean() for g in groups])
        if expected is not None and np.max(np.abs(cal_freq - expected)) <= tolerance:
            continue
        shown = (
            f"{n_cal} channel(s) at {cal_freq.min() / 1e6:.4f}-{cal_freq.max() / 1e6:.4f} MHz"
            if n_cal
            else "no channels"
        )
        averaged = f" (or {chanbin} averaged)" if chanbin > 1 else ""
        raise ContimgError(
            f"bandpass {info.path} has {shown} for SPW {spw}, but the MS has {n_ms} channel(s)"
            f"{averaged} at {ms_freq.min() / 1e6:.4f}-{ms_freq.max() / 1e6:.4f} MHz: it was "
            "solved on another spectral setup"
        )


def spwmap_for(info: CaltableInfo, n_spw: int) -> list[int]:
    """Map every SPW to the one holding solutions when they were combined over SPWs."""
    if len(info.spws) == 1 and n_spw > 1 and info.kind != "B":
        return [info.spws[0]] * n_spw
    return []


def merge_caltables(paths, merged) -> str:
    """One table holding the rows of several same-kind tables (per-SPW solves).

    Published by rename: an interrupted merge leaves no table behind.
    """
    from casacore.tables import table

    paths = [str(require_caltable(p)) for p in paths]
    if not paths:
        raise ValueError("nothing to merge")
    with publish_directory(merged) as partial:
        with table(paths[0], ack=False) as first:
            first.copy(str(partial), deep=True, valuecopy=True).close()
        with table(str(partial), readonly=False, ack=False) as out:
            for other in paths[1:]:
                with table(other, ack=False) as src:
                    src.copyrows(out)
    return os.fspath(merged)


def solution_statistics(path, antennas=()) -> dict:
    """Flagged fraction, SNR median, and amplitude/phase spread of a table's solutions.

    ``antennas``: the antennas with data (the rows CASA writes, flagged, for
    antennas that never observed do not count); empty for every antenna.
    """

    flags, snrs, all_values, antenna, row_good = [], [], [], [], []
    for part in read_solutions_by_spw(path).values():
        rows = np.isin(part.antenna, np.asarray(antennas)) if len(antennas) else slice(None)
        flag = part.flag[rows]
        flags.append(flag.ravel())
        all_values.append(part.values[rows].ravel())
        if part.snr is not None:
            snrs.append(part.snr[rows].ravel())
        antenna.append(part.antenna[rows])
        row_good.append((~flag).reshape(len(flag), -1).any(axis=1))
    flag = np.concatenate(flags) if flags else np.zeros(0, bool)
    values = np.concatenate(all_values) if all_values else np.zeros(0)
    snr = np.concatenate(snrs) if snrs and len(snrs) == len(flags) else None
    antenna = np.concatenate(antenna) if antenna else np.zeros(0, int)
    row_good = np.concatenate(row_good) if row_good else np.zeros(0, bool)
    n = int(flag.size)
    good = ~flag
    stats = {
        "n_solutions": n,
        "flagged_fraction": float(flag.mean()) if n else 1.0,
        "kept_fraction": float(good.mean()) if n else 0.0,
    }
    stats["lost_antennas"] = sorted(
        int(a) for a in set(antenna.tolist()) - set(antenna[row_good].tolist())
    )
    if snr is not None and good.any():
        stats["snr_median"] = float(np.median(snr[good]))
    if snr is not None and (~good).any():
        lost_snr = snr[~good]
        lost_snr = lost_snr[np.isfinite(lost_snr) & (lost_snr > 0)]
        if len(lost_snr):
            stats["flagged_snr_median"] = float(np.median(lost_snr))
    if np.iscomplexobj(values) and good.any():
        amp = np.abs(values[good])
        stats["amplitude_median"] = float(np.median(amp))
        stats["amplitude_std"] = float(np.std(amp))
        stats["phase_std_deg"] = float(np.degrees(np.std(np.angle(values[good]))))
    return stats


@dataclass(frozen=True, eq=False)
class CaltableSolutions:
    """Every row of a calibration table: ``values`` (row, chan, corr) CPARAM or FPARAM."""

    info: CaltableInfo
    values: np.ndarray
    flag: np.ndarray
    snr: np.ndarray | None
    antenna: np.ndarray  # (row,)
    refant: np.ndarray  # (row,) ANTENNA2
    spw: np.ndarray  # (row,)
    time: np.ndarray  # (row,) MJD seconds
    antenna_names: tuple[str, ...]
    ms_name: str  # the MS it was solved on (table keyword MSName)


def read_solutions(path) -> CaltableSolutions:
    """Every row at once; a table whose SPWs differ in channel count is refused
    by casacore here (read it with :func:`read_solutions_by_spw`)."""
    from casacore.tables import table

    info = caltable_info(path)
    with table(info.path, ack=False) as cal:
        solutions = _solution_columns(cal)
        ms_name = str(cal.getkeywords().get("MSName", ""))
    return CaltableSolutions(
        info=info, antenna_names=_caltable_antenna_names(info), ms_name=ms_name, **solutions
    )


def read_solutions_by_spw(path) -> dict[int, CaltableSolutions]:
    """The rows of each SPW (cells agree in shape within one SPW, not across SPWs)."""
    from casacore.tables import table

    info = caltable_info(path)
    names = _caltable_antenna_names(info)
    out = {}
    with table(info.path, ack=False) as cal:
        ms_name = str(cal.getkeywords().get("MSName", ""))
        for spw in sorted({int(s) for s in cal.getcol("SPECTRAL_WINDOW_ID")}):
            with cal.query(f"SPECTRAL_WINDOW_ID == {spw}") as rows:
                out[spw] = CaltableSolutions(
                    info=info, antenna_names=names, ms_name=ms_name, **_solution_columns(rows)
                )
    return out


def _solution_columns(cal) -> dict:
    columns = cal.colnames()
    return dict(
        values=cal.getcol("CPARAM") if "CPARAM" in columns else cal.getcol("FPARAM"),
        flag=cal.getcol("FLAG"),
        snr=cal.getcol("SNR") if "SNR" in columns else None,
        antenna=cal.getcol("ANTENNA1"),
        refant=cal.getcol("ANTENNA2"),
        spw=cal.getcol("SPECTRAL_WINDOW_ID"),
        time=cal.getcol("TIME"),
    )


def _caltable_antenna_names(info) -> tuple[str, ...]:
    from casacore.tables import table

    with table(str(Path(info.path) / "ANTENNA"), ack=False) as ant:
        return tuple(shown_names(str(n) for n in ant.getcol("NAME")))


@dataclass(frozen=True, eq=False)
class NewSolutions:
    """Solutions to write as rows of an empty CASA table: one row per (time, antenna).

    ``values``, ``flag``, ``snr``, ``error``: (time, antenna, chan, pol).
    """

    spw: int
    time: np.ndarray  # (time,) MJD seconds
    field: np.ndarray  # (time,) FIELD_ID of the interval's first data
    scan: np.ndarray  # (time,)
    refant: np.ndarray  # (time,) ANTENNA2: the reference antenna used, -1 for none
    values: np.ndarray
    flag: np.ndarray
    snr: np.ndarray
    error: np.ndarray


def append_solutions(path, solutions: NewSolutions) -> None:
    """Add the rows of ``solutions`` to the calibration table at ``path`` (made by CASA)."""
    from casacore.tables import table

    n_time, n_ant, n_chan, n_pol = solutions.values.shape
    n = n_time * n_ant
    with table(str(require_caltable(path)), readonly=False, ack=False) as cal:
        start = cal.nrows()
        cal.addrows(n)

        def per_time(values, dtype):
            return np.repeat(np.asarray(values, dtype), n_ant)

        columns = {
            "TIME": per_time(solutions.time, float),
            "FIELD_ID": per_time(solutions.field, np.int32),
            "SPECTRAL_WINDOW_ID": np.full(n, solutions.spw, np.int32),
            "ANTENNA1": np.tile(np.arange(n_ant, dtype=np.int32), n_time),
            "ANTENNA2": per_time(solutions.refant, np.int32),
            "INTERVAL": np.zeros(n),
            "SCAN_NUMBER": per_time(solutions.scan, np.int32),
            "OBSERVATION_ID": np.zeros(n, np.int32),
            # delays (real) as FPARAM, gains as CPARAM
            **(
                {"FPARAM": solutions.values.reshape(n, n_chan, n_pol).astype(np.float32)}
                if np.isrealobj(solutions.values)
                else {"CPARAM": solutions.values.reshape(n, n_chan, n_pol).astype(np.complex64)}
            ),
            "PARAMERR": solutions.error.reshape(n, n_chan, n_pol).astype(np.float32),
            "FLAG": solutions.flag.reshape(n, n_chan, n_pol),
            "SNR": solutions.snr.reshape(n, n_chan, n_pol).astype(np.float32),
            "WEIGHT": np.ones((n, n_chan, n_pol), np.float32),
        }
        for name, values in columns.items():
            cal.putcol(name, values, startrow=start, nrow=n)
