"""CASA calibration tasks as leaf functions: explicit paths in, a small record out.

Each call runs in the calling process (a Dask worker process with one
thread, or the driver for serial runs), sends CASA's log to ``log_file``, and
checks that the product it asked for exists, because CASA tasks often log a
SEVERE message and return instead of raising. Caltables are written under a
temporary name and renamed into place, so an interrupted solve leaves none.
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsa110_contimg import casa_env
from dsa110_contimg.errors import CasaTaskError
from dsa110_contimg.ms import reads
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.ms.reads import subtable_stamp


@dataclass(frozen=True)
class CasaCall:
    """What one CASA task call did: its name, inputs, product and wall time."""

    task: str
    vis: str
    output: str | None
    seconds: float
    parameters: dict = field(default_factory=dict)


def _call(task_name: str, log_file, **parameters):
    """Run one CASA task; whatever it raises becomes a CasaTaskError saying where."""
    if log_file:
        casa_env.set_casa_logfile(log_file)
    tasks = casa_env.casatasks()
    try:
        with casa_env.casa_output_to_log():
            return getattr(tasks, task_name)(**parameters)
    except Exception as err:  # noqa: BLE001 - CASA raises RuntimeError, AssertionError, ...
        target = parameters.get("vis") or parameters.get("imagename") or ""
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        where = f" (CASA log {log_file})" if log_file else ""
        raise CasaTaskError(f"{task_name} failed on {target}: {reason}{where}") from err


def _log_size(log_file) -> int:
    try:
        return Path(log_file).stat().st_size if log_file else 0
    except OSError:
        return 0


def log_reason(log_file, since: int = 0) -> str | None:
    """What CASA said went wrong in ``log_file`` after byte ``since``.

    A solve's statistics (solution intervals with unflagged data, enough
    baselines per antenna, enough SNR) when it logged them, else its last
    SEVERE message, else its last WARN message (continuation lines joined).
    """
    if not log_file:
        return None
    try:
        with open(log_file, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    found = {"SEVERE": None, "WARN": None}
    statistics = None
    lines = [line.split("\t") for line in text.splitlines()]
    for i, parts in enumerate(lines):
        if len(parts) < 4:
            continue
        priority, origin, message = parts[1].strip(), parts[2].strip(), " ".join(parts[3].split())
        if message.startswith("expected data_unflagged above_minblperant above_minsnr"):
            following = lines[i + 1] if i + 1 < len(lines) else []
            numbers = following[3] if len(following) > 3 else ""
            counts = [int(n) for n in re.findall(r"\d+", numbers)]
            if len(counts) >= 8:
                statistics = _solve_statistics_reason(counts)
        if priority in found and message:
            joined = origin.endswith("+") and found[priority]
            found[priority] = f"{found[priority]} {message}" if joined else message
    return statistics or found["SEVERE"] or found["WARN"]


def _solve_statistics_reason(counts) -> str:
    """CASA's [expected] [unflagged] [above minblperant] [above minsnr] (one per polarisation)."""
    expected, unflagged, baselines, snr = (max(counts[k], counts[k + 1]) for k in range(0, 8, 2))
    if unflagged == 0:
        return f"none of {expected} solution interval(s) had unflagged data"
    if baselines == 0:
        return (
            f"{unflagged} of {expected} solution interval(s) had unflagged data but none enough "
            "baselines per antenna (minblperant; check uvrange and flags)"
        )
    if snr == 0:
        return f"{baselines} solution interval(s) had enough baselines but none reached minsnr"
    return f"{snr} of {expected} solution interval(s) solved"


def _timed(task_name, vis, output, log_file, **parameters) -> CasaCall:
    started = time.perf_counter()
    _call(task_name, log_file, vis=str(vis), **parameters)
    return CasaCall(task_name, str(vis), output, time.perf_counter() - started, parameters)


def _write_ms(task_name: str, vis, outputvis, log_file, parameters: dict) -> CasaCall:
    """Run a task that writes a new MS: built under a temporary name, then renamed."""
    started = time.perf_counter()
    with publish_directory(outputvis) as partial:
        _call(task_name, log_file, vis=str(vis), outputvis=str(partial), **parameters)
        if not (partial / "table.dat").exists():
            raise CasaTaskError(f"{task_name} wrote no MS for {vis} (see {log_file})")
    return CasaCall(task_name, str(vis), str(outputvis), time.perf_counter() - started, parameters)


def run_phaseshift(
    vis: str,
    outputvis: str,
    phasecenters: dict[int, str],
    spw: str = "",
    field: str = "",
    log_file: str | None = None,
    datacolumn: str = "data",
) -> CasaCall:
    """Copy ``datacolumn`` of ``vis`` (``spw``/``field`` selection) to ``outputvis``, shifting
    fields (``all``: DATA and CORRECTED_DATA).

    ``phasecenters`` maps field id -> direction (``J2000 128.7deg 55.6deg``);
    fields not in it keep their phase centre. CASA needs the per-field dict
    form when several fields are selected. FIELD ids and DATA_DESC_IDs keep
    their values (no reindexing); PHASE_DIR changes, REFERENCE_DIR does not.
    """
    parameters = dict(
        field=field,
        spw=spw,
        phasecenter={str(f): c for f, c in phasecenters.items()},
        datacolumn=datacolumn,
    )
    return _write_ms("phaseshift", vis, outputvis, log_file, parameters)


def run_split(
    vis: str, outputvis: str, spw: str = "", field: str = "", log_file: str | None = None
) -> CasaCall:
    """Copy DATA of a ``spw``/``field`` selection to ``outputvis``, ids unchanged."""
    parameters = dict(spw=spw, field=field, datacolumn="data", reindex=False)
    return _write_ms("mstransform", vis, outputvis, log_file, parameters)


def run_initweights_ones(vis: str, log_file: str | None = None) -> CasaCall:
    """Set WEIGHT (and WEIGHT_SPECTRUM, when present) of ``vis`` to 1 and SIGMA to 1."""
    from casacore.tables import table

    with table(str(vis), ack=False) as main:
        spectrum = "WEIGHT_SPECTRUM" in main.colnames()
    return _timed("initweights", vis, str(vis), log_file, wtmode="ones", dowtsp=spectrum)


def run_partition(vis: str, outputvis: str, n_sub_ms: int, log_file: str | None = None):
    """CASA ``partition``: a Multi-MS of ``vis`` with one sub-MS per SPW (all columns)."""
    parameters = dict(
        createmms=True,
        separationaxis="spw",
        numsubms=n_sub_ms,
        flagbackup=False,
        datacolumn="all",
    )
    return _write_ms("partition", vis, outputvis, log_file, parameters)


def run_average(
    vis: str,
    outputvis: str,
    timebin: str,
    chanbin: int,
    field: str = "",
    log_file: str | None = None,
) -> CasaCall:
    """Average DATA and MODEL_DATA of ``vis`` in time and/or frequency into ``outputvis``."""
    parameters = dict(
        field=field,
        datacolumn="all",  # DATA and MODEL_DATA (no CORRECTED_DATA yet)
        reindex=False,
        timeaverage=timebin not in ("", "0s"),
        timebin=timebin or "0s",
        timespan="scan",
        chanaverage=chanbin > 1,
        chanbin=max(int(chanbin), 1),
    )
    return _write_ms("mstransform", vis, outputvis, log_file, parameters)


FLAG_MODES = {
    "autocorr": {"mode": "manual", "autocorr": True},
    "zeros": {"mode": "clip", "clipzeros": True},
    "tfcrop": {"mode": "tfcrop"},
    "rflag": {"mode": "rflag"},
}


def run_flagdata(
    vis: str, modes: tuple[str, ...], log_file: str | None = None, one_call_per_mode: bool = False
) -> CasaCall:
    """Flag ``vis`` in place with the listed modes.

    ``autocorr`` flags autocorrelations, ``zeros`` flags exact zeros (clip
    with ``clipzeros``), ``tfcrop`` and ``rflag`` run CASA's automatic RFI
    flaggers with their defaults. No flag backup is written: the caller owns
    a copy of the data, never the input MS. ``one_call_per_mode`` runs each
    mode as its own call (MPI CASA hangs on list mode with a Multi-MS).
    """
    started = time.perf_counter()
    unknown = sorted(set(modes) - set(FLAG_MODES))
    if unknown:
        raise ValueError(f"unknown flagging modes {unknown}; known: {sorted(FLAG_MODES)}")
    if one_call_per_mode:
        for mode in modes:
            _call("flagdata", log_file, vis=str(vis), flagbackup=False, **FLAG_MODES[mode])
    elif modes:
        commands = [
            " ".join(f"{key}={value!r}" for key, value in FLAG_MODES[m].items()) for m in modes
        ]
        _call("flagdata", log_file, vis=str(vis), mode="list", inpfile=commands, flagbackup=False)
    return CasaCall("flagdata", str(vis), None, time.perf_counter() - started, {"modes": modes})


def _solve(task_name: str, vis: str, caltable: str, log_file, parameters: dict) -> CasaCall:
    started = time.perf_counter()
    log_start = _log_size(log_file)
    with publish_directory(caltable) as partial:
        _call(task_name, log_file, vis=str(vis), caltable=str(partial), **parameters)
        if not (Path(partial) / "table.dat").exists():
            reason = log_reason(log_file, log_start)
            raise CasaTaskError(
                f"{task_name} wrote no caltable for {vis} spw {parameters.get('spw') or 'all'}"
                + (f": CASA says {reason!r}" if reason else "")
                + f" (see {log_file})"
            )
    return CasaCall(task_name, str(vis), str(caltable), time.perf_counter() - started, parameters)


def run_gaincal(vis: str, caltable: str, log_file: str | None = None, **parameters) -> CasaCall:
    """CASA ``gaincal`` writing ``caltable`` (parameters as CASA names them)."""
    return _solve("gaincal", vis, caltable, log_file, parameters)


def run_bandpass(vis: str, caltable: str, log_file: str | None = None, **parameters) -> CasaCall:
    """CASA ``bandpass`` writing ``caltable`` (parameters as CASA names them)."""
    return _solve("bandpass", vis, caltable, log_file, parameters)


def run_applycal(vis: str, log_file: str | None = None, **parameters) -> CasaCall:
    """CASA ``applycal``: fills CORRECTED_DATA of the selection in ``vis``."""
    for table in parameters.get("gaintable", []):
        if not (Path(table) / "table.dat").exists():
            raise CasaTaskError(f"caltable {table} does not exist")
    return _timed("applycal", vis, str(vis), log_file, flagbackup=False, **parameters)


def run_clearcal(vis: str, log_file: str | None = None) -> CasaCall:
    """CASA ``clearcal``: CORRECTED_DATA := DATA (creating the column if needed)."""
    return _timed("clearcal", vis, str(vis), log_file, addmodel=False)


def run_tclean(vis: str, output_dir: str, log_file: str | None = None, **parameters) -> CasaCall:
    """CASA ``tclean`` writing ``output_dir/image.*`` and FITS copies of image and residual.

    The whole image set is built in a temporary directory and renamed into
    place, so an interrupted run leaves no partial image set.
    """
    started = time.perf_counter()
    with publish_directory(output_dir) as partial:
        partial.mkdir(parents=True)
        imagename = str(partial / "image")
        _call("tclean", log_file, vis=str(vis), imagename=imagename, **parameters)
        if not (partial / "image.image" / "table.dat").exists():
            raise CasaTaskError(f"tclean wrote no image for {vis} (see {log_file})")
        for product in ("image", "residual"):
            _call(
                "exportfits",
                log_file,
                imagename=f"{imagename}.{product}",
                fitsimage=f"{imagename}.{product}.fits",
                overwrite=True,
            )
    return CasaCall("tclean", str(vis), str(output_dir), time.perf_counter() - started, parameters)


def create_caltable(vis: str, caltable: str, kind: str) -> None:
    """An empty CASA calibration table of ``kind`` (``G``, ``B`` or ``K``) for ``vis``:
    CASA's own schema, keywords and subtables (ANTENNA, FIELD, SPECTRAL_WINDOW, ...), rows
    to add. A delay table's SPWs carry the centre of their channels, as CASA's solve
    writes it: the frequency its delays are applied about."""
    calibrater = casa_env.casatools().calibrater()
    parameter_type = "Float" if kind == "K" else "Complex"
    try:
        with casa_env.casa_output_to_log():
            calibrater.open(vis, addcorr=False, addmodel=False)
            made = calibrater.createcaltable(caltable, parameter_type, f"{kind} Jones",
                                             kind != "B")  # fmt: skip
    finally:
        calibrater.close()
    if not made:
        raise CasaTaskError(f"CASA could not create the calibration table {caltable}")
    if kind == "K":
        from casacore.tables import table

        with table(f"{caltable}/SPECTRAL_WINDOW", readonly=False, ack=False) as spws:
            centres = [np.mean(f) for f in reads.chan_freq_hz(vis)]
            spws.putcol("CHAN_FREQ", np.asarray(centres, float)[:, None])


def new_caltable(vis: str, path, kind: str) -> None:
    """An empty CASA table of ``kind`` for ``vis``: a copy of one CASA made once per MS state."""
    vis = str(Path(vis).absolute())
    stamp = subtable_stamp(vis, ("ANTENNA", "FIELD", "OBSERVATION", "SPECTRAL_WINDOW"))
    shutil.copytree(_caltable_template(vis, kind, stamp), path)


@functools.lru_cache(maxsize=64)
def _caltable_template(vis: str, kind: str, _stamp: tuple) -> Path:
    template = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=_template_dir())) / "table"
    create_caltable(vis, str(template), kind)
    return template


@functools.cache
def _template_dir() -> str:
    folder = tempfile.mkdtemp(prefix="contimg-caltable-templates-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def create_multi_ms(output_mms: str, sub_ms_paths: list[str]) -> None:
    """The casatools ``ms.createmultims`` reference concatenation of ``sub_ms_paths``
    (moved into ``output_mms/SUBMSS``)."""
    ms_tool = casa_env.casatools().ms()
    try:
        with casa_env.casa_output_to_log():
            ms_tool.createmultims(output_mms, sub_ms_paths, [], True, False, False, [])
    finally:
        ms_tool.close()
