"""The native engine's solve: CASA's gaincal/bandpass parameters in, a CASA caltable out.

The solve rows of one SPW (its solve fields' cross-correlations) are read
once through dask-ms into memory (:class:`SolveData`); each solve of that SPW
assigns them to solution intervals (CASA's grid, ``combine``, the uv range)
and accumulates per interval, channel (``B``) or SPW (``G``), correlation and
baseline the sums of
:func:`~dsa110_contimg.calibration.solver_kernels.accumulate`, with the earlier
tables applied on the fly; every interval is then solved at once, flagged
(``minblperant``, ``minsnr`` with CASA's SNR), referenced to the first
available reference antenna, normalised (``solnorm``) and gap-filled
(``fillgaps``), and written into a table CASA itself created, so ``applycal``,
the QA and ``apply`` read it as CASA's own.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.calibration import solver_kernels as kernels
from dsa110_contimg.casa.tasks import create_caltable
from dsa110_contimg.errors import ContimgError, StepFailed
from dsa110_contimg.instrument import SPEED_OF_LIGHT_M_S
from dsa110_contimg.ms import caltables, reads
from dsa110_contimg.ms.antennas import antenna_names
from dsa110_contimg.ms.publish import publish_directory

KEEP_WHOLE_CHUNK = 0.9  # fraction of solve rows above which a chunk is not copied
MAX_ITERATIONS = 200
PER_INTEGRATION_S = 1e-6  # a solution interval shorter than any integration
TOLERANCE = 1e-10


@dataclass(frozen=True)
class SolveRequest:
    """What CASA's parameters ask of one solve, checked."""

    kind: str  # "G" or "B"
    spw: int
    fields: tuple[int, ...]
    solint_s: float  # inf: one interval
    combine_scan: bool
    combine_field: bool
    phase_only: bool
    uv_range_lambda: tuple[float, float]
    minsnr: float
    minblperant: int
    solnorm: bool
    fillgaps: int
    refant: str
    priors: tuple[tuple[str, str, tuple[int, ...]], ...]  # (table, interp, spwmap)


def parse_solint(text: str) -> float:
    """CASA's solint in seconds: ``inf``, ``int`` (each integration), ``30s``, ``2min``,
    ``1h`` or a number of seconds."""
    text = str(text).strip().lower()
    if text in ("inf", ""):
        return np.inf
    if text == "int":
        return PER_INTEGRATION_S
    match = re.fullmatch(r"([0-9.]+)\s*(s|sec|min|m|h)?", text)
    if not match:
        raise ContimgError(f"the native engine does not understand solint {text!r}")
    scale = {"s": 1, "sec": 1, None: 1, "min": 60, "m": 60, "h": 3600}[match[2]]
    return float(match[1]) * scale


def parse_uvrange_lambda(text: str) -> tuple[float, float]:
    """(min, max) uv distance in wavelengths from CASA's uvrange in wavelength units
    (``>1klambda``, ``<500lambda``, ``1~10klambda``); ranges in metres are refused."""
    text = str(text or "").strip().lower().replace(" ", "")
    if not text:
        return 0.0, np.inf
    units = {"lambda": 1.0, "klambda": 1e3, "mlambda": 1e6}
    match = re.fullmatch(r"(>|<)?([0-9.]+)(?:~([0-9.]+))?(klambda|mlambda|lambda)", text)
    if not match:
        raise ContimgError(
            f"the native engine takes uvrange in wavelengths (e.g. '>1klambda'), not {text!r}"
        )
    scale = units[match[4]]
    low, high = float(match[2]) * scale, (float(match[3]) * scale if match[3] else None)
    if match[1] == ">":
        return low, np.inf
    if match[1] == "<":
        return 0.0, low
    return (low, high) if high is not None else (low, low)


def request_from_parameters(task: str, parameters: dict) -> SolveRequest:
    """The request CASA's ``gaincal``/``bandpass`` parameters make; one line for what the
    native engine does not do."""
    combine = {c.strip() for c in str(parameters.get("combine", "")).split(",") if c.strip()}
    if "spw" in combine:
        raise ContimgError("the native engine solves each SPW on its own: combine 'spw' needs "
                           "--engine casa")  # fmt: skip
    gaintype = parameters.get("gaintype", "G")
    if task == "gaincal" and gaintype != "G":
        raise ContimgError(f"the native engine solves gaintype G, not {gaintype!r}: delays need "
                           "--engine casa")  # fmt: skip
    calmode = parameters.get("calmode", "ap")
    if calmode not in ("p", "ap"):
        raise ContimgError(f"the native engine solves calmode 'p' or 'ap', not {calmode!r}")
    spw = str(parameters.get("spw", ""))
    if not spw.isdigit():
        raise ContimgError(f"the native engine solves one SPW at a time, not spw {spw!r}")
    fields = tuple(int(f) for f in str(parameters.get("field", "")).split(",") if f.strip())
    gaintable = list(parameters.get("gaintable") or [])
    interp = list(parameters.get("interp") or []) + [""] * len(gaintable)
    spwmap = list(parameters.get("spwmap") or []) + [[]] * len(gaintable)
    priors = tuple(
        (str(t), str(i or "linear"), tuple(int(s) for s in m))
        for t, i, m in zip(gaintable, interp, spwmap, strict=False)
    )
    return SolveRequest(
        kind="B" if task == "bandpass" else "G",
        spw=int(spw),
        fields=fields,
        solint_s=parse_solint(parameters.get("solint", "inf")),
        combine_scan="scan" in combine,
        combine_field="field" in combine,
        phase_only=calmode == "p" and task == "gaincal",
        uv_range_lambda=parse_uvrange_lambda(parameters.get("uvrange", "")),
        minsnr=float(parameters.get("minsnr", 3.0)),
        minblperant=int(parameters.get("minblperant", 4)),
        solnorm=bool(parameters.get("solnorm", False)),
        fillgaps=int(parameters.get("fillgaps", 0)) if task == "bandpass" else 0,
        refant=str(parameters.get("refant", "")),
        priors=priors,
    )


def solve_to_caltable(vis: str, caltable: str, request: SolveRequest,
                      data: SolveData | None = None) -> dict:  # fmt: skip
    """Solve ``request`` on ``vis`` and write ``caltable`` (published by rename).

    ``data``: the SPW's solve rows already in memory (:func:`read_solve_data`), shared by
    the solves of one SPW; read here when not given.
    """
    started = time.perf_counter()
    if data is None:
        data = read_solve_data(vis, request.spw, request.fields)
    setup = _setup(data, request)
    reduced = _reduce(data, request, setup)
    accumulated = time.perf_counter()
    solutions = _solve(request, setup, reduced)
    solved = time.perf_counter()
    with publish_directory(caltable) as partial:
        create_caltable(vis, str(partial), request.kind)
        caltables.append_solutions(partial, solutions)
    return {
        "engine": "native",
        "accumulate_seconds": accumulated - started,
        "solve_seconds": solved - accumulated,
        "write_seconds": time.perf_counter() - solved,
        "intervals": int(len(solutions.time)),
    }


@dataclass(frozen=True, eq=False)  # not slotted: ``times`` is cached on the instance
class SolveData:
    """One SPW's solve rows (its solve fields' cross-correlations, not row-flagged), in memory.

    Read once per SPW through dask-ms; every solve of the SPW (pre-bandpass phases,
    bandpass, gains) accumulates from these arrays instead of reading the MS again.
    ``chunks`` hold the visibility columns (data, model, flag, weight, antenna1,
    antenna2, time) chunk by chunk, in the order of the per-row columns below; a chunk
    made mostly of solve rows is kept whole, its other rows not ``usable``.
    """

    vis: str
    spw: int
    fields: tuple[int, ...]
    n_ant: int
    antenna_names: tuple[str, ...]
    hands: np.ndarray  # correlation indices of the parallel hands
    chan_freq: np.ndarray
    chunks: tuple[tuple[np.ndarray, ...], ...]
    time: np.ndarray  # per row, all chunks in order
    field: np.ndarray
    scan: np.ndarray
    uv_m: np.ndarray  # sqrt(u^2 + v^2)
    usable: np.ndarray  # a solve row (cross-correlation of a solve field, not row-flagged)
    read_seconds: float

    @functools.cached_property
    def times(self) -> tuple[np.ndarray, np.ndarray]:
        """(the distinct times, each row's index into them)."""
        return np.unique(self.time, return_inverse=True)

    @property
    def n_rows(self) -> int:
        return len(self.time)


def read_solve_data(vis: str, spw: int, fields) -> SolveData:
    """Read the solve rows of ``fields`` in ``spw`` of ``vis`` once (one dask-ms pass)."""
    started = time.perf_counter()
    spw_of = reads.spw_of_ddid(vis)
    ddids = [int(d) for d in np.flatnonzero(np.asarray(spw_of) == spw)]
    if not ddids:
        raise ContimgError(f"{vis} has no SPW {spw}")
    corr = reads.corr_types_of_ddid(vis)[ddids[0]]
    hands = np.array([i for i, c in enumerate(corr) if int(c) in reads.PARALLEL_HAND_CODES])
    if not len(hands):
        raise ContimgError(f"{vis} has no parallel-hand correlations to solve on")
    weight_column = "WEIGHT_SPECTRUM" if "WEIGHT_SPECTRUM" in reads.main_columns(vis) else "WEIGHT"
    cube = ["DATA", "MODEL_DATA", "FLAG", weight_column, "ANTENNA1", "ANTENNA2", "TIME"]
    small = ["FIELD_ID", "SCAN_NUMBER", "FLAG_ROW", "UVW"]
    wanted = np.array(sorted(int(f) for f in fields))
    datasets = [ds for ds in reads.read_visibility_datasets(vis, cube + small,
                                                            group_cols=["DATA_DESC_ID"])
                if int(ds.attrs["DATA_DESC_ID"]) in ddids]  # fmt: skip
    delayed = [chunk for ds in datasets
               for chunk in zip(*[ds[c].data.to_delayed().ravel() for c in cube + small],
                                strict=True)]  # fmt: skip
    (loaded,) = reads.compute_reading(delayed)
    chunks, per_row = [], {"time": [], "field": [], "scan": [], "uv_m": [], "usable": []}
    for values in loaded:
        *visibilities, field_id, scan, flag_row, uvw = values
        usable = (visibilities[4] != visibilities[5]) & ~flag_row
        if len(wanted):  # no fields named: every field, as CASA's field=''
            usable &= np.isin(field_id, wanted)
        if not usable.any():
            continue
        # a chunk mostly of solve rows is kept whole (its other rows marked, not copied out)
        keep = usable if usable.mean() < KEEP_WHOLE_CHUNK else slice(None)
        chunks.append(tuple(v[keep] for v in visibilities))
        per_row["time"].append(visibilities[6][keep])
        per_row["field"].append(field_id[keep])
        per_row["scan"].append(scan[keep])
        per_row["uv_m"].append(np.hypot(uvw[keep, 0], uvw[keep, 1]))
        per_row["usable"].append(usable[keep])
    names = tuple(antenna_names(vis))
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in per_row.items()}
    return SolveData(
        vis=str(vis),
        spw=spw,
        fields=tuple(int(f) for f in fields),
        n_ant=len(names),
        antenna_names=names,
        hands=hands,
        chan_freq=np.asarray(reads.chan_freq_hz(vis)[spw], float),
        chunks=tuple(chunks),
        time=joined["time"],
        field=joined["field"].astype(np.int64),
        scan=joined["scan"].astype(np.int64),
        uv_m=joined["uv_m"],
        usable=joined["usable"].astype(bool),
        read_seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True, eq=False)
class _Setup:
    n_ant: int
    hands: np.ndarray
    n_chan: int
    row_block: np.ndarray  # (solve row,) interval of each row, -1 for rows not used
    block_field: np.ndarray
    block_scan: np.ndarray
    refant_order: tuple[int, ...]


def _setup(data: SolveData, request: SolveRequest) -> _Setup:
    if data.spw != request.spw or (data.fields and not set(request.fields) <= set(data.fields)):
        raise ValueError("the solve data hold other rows than the request asks for")
    uv_lambda = data.uv_m * data.chan_freq.mean() / SPEED_OF_LIGHT_M_S
    low, high = request.uv_range_lambda
    keep = data.usable & (uv_lambda >= low) & (uv_lambda <= high)
    if request.fields:
        keep &= np.isin(data.field, request.fields)
    if not keep.any():
        raise StepFailed(f"no unflagged cross-correlations of fields {list(request.fields)} "
                         f"in SPW {request.spw} within the uv range")  # fmt: skip
    blocks = kernels.solution_blocks(data.time[keep], data.field[keep], data.scan[keep],
                                     request.solint_s, request.combine_field,
                                     request.combine_scan)  # fmt: skip
    row_block = np.full(data.n_rows, -1, np.int64)
    row_block[keep] = blocks
    # each interval's first row in time: its FIELD_ID and SCAN_NUMBER label the solution
    order = np.argsort(data.time[keep], kind="stable")
    _, first_in_order = np.unique(blocks[order], return_index=True)
    first = order[first_in_order]
    return _Setup(
        n_ant=data.n_ant,
        hands=data.hands,
        n_chan=len(data.chan_freq),
        row_block=row_block,
        block_field=data.field[keep][first],
        block_scan=data.scan[keep][first],
        refant_order=_refant_order(data, request.refant),
    )


def _refant_order(data: SolveData, refant: str) -> tuple[int, ...]:
    names, order = list(data.antenna_names), []
    for token in (t.strip() for t in refant.split(",") if t.strip()):
        if token in names:
            order.append(names.index(token))
        elif token.isdigit() and int(token) < len(names):
            order.append(int(token))
        else:
            raise ContimgError(f"reference antenna {token!r} is not in {data.vis}")
    return tuple(order)


@dataclass(frozen=True, eq=False)
class _Reduced:
    vis_sum: np.ndarray  # (block, chan_out, pol, ant, ant)
    weight_sum: np.ndarray
    square_sum: np.ndarray
    count: np.ndarray
    time_weight: np.ndarray  # (block,) sum of W t
    weight_total: np.ndarray  # (block,) sum of W


def _reduce(data: SolveData, request: SolveRequest, setup: _Setup) -> _Reduced:
    """Every chunk's rows added into one set of sums, the earlier tables applied."""
    priors = [TableGains.from_table(path, interp, spwmap, request.spw, setup.n_ant)
              for path, interp, spwmap in request.priors]  # fmt: skip
    n_out = setup.n_chan if request.kind == "B" else 1
    n_block = int(setup.row_block.max()) + 1
    n_pol = len(setup.hands)
    shape = (n_block, setup.n_ant, setup.n_ant, n_pol, n_out)  # the kernel's layout
    sums = (np.zeros(shape, np.complex128), np.zeros(shape), np.zeros(shape),
            np.zeros(shape, np.int64))  # fmt: skip
    time_weight, weight_total = np.zeros(n_block), np.zeros(n_block)
    chan_out = (np.arange(setup.n_chan) if request.kind == "B"
                else np.zeros(setup.n_chan, np.int64))  # fmt: skip
    # the earlier tables' gains once, at every time of the solve rows
    unique_times, time_index = data.times
    prior = np.ones((len(unique_times), setup.n_ant, setup.n_chan, n_pol), np.complex128)
    for table in priors:
        prior *= table.at(unique_times, n_pol, setup.n_chan)  # (time, ant, chan, pol)
    start = 0
    for data_chunk, model, flag, weight, ant1, ant2, times in data.chunks:
        rows = slice(start, start + len(times))
        start += len(times)
        if weight.ndim == 2:  # WEIGHT (row, corr): the same for every channel, not copied
            weight = np.broadcast_to(weight[:, None, :], data_chunk.shape)
        kernels.accumulate(data_chunk, model, weight, flag, ant1, ant2, times,
                           setup.row_block[rows], chan_out, setup.hands, prior, time_index[rows],
                           request.phase_only, *sums, time_weight, weight_total)  # fmt: skip
    return _Reduced(*kernels.both_triangles(*sums), time_weight, weight_total)


@dataclass(frozen=True, eq=False)
class TableGains:
    """One SPW's solutions of a CASA table, ready to interpolate to the data's times."""

    times: np.ndarray
    values: np.ndarray  # (time, ant, chan, pol)
    ok: np.ndarray
    interp: str

    @classmethod
    def from_table(cls, path, interp, spwmap, spw: int, n_ant: int) -> TableGains:
        by_spw = caltables.read_solutions_by_spw(path)
        source = spwmap[spw] if spwmap and spw < len(spwmap) else spw
        if source not in by_spw:
            raise ContimgError(f"caltable {path} has no solutions for SPW {source}")
        part = by_spw[source]
        times = np.unique(part.time)
        n_chan, n_pol = part.values.shape[1:]
        values = np.zeros((len(times), n_ant, n_chan, n_pol), np.complex128)
        ok = np.zeros(values.shape, bool)
        index = np.searchsorted(times, part.time)
        values[index, part.antenna] = part.values
        ok[index, part.antenna] = ~part.flag
        return cls(times, values, ok, str(interp or "linear"))

    def at(self, times, n_pol, n_chan) -> np.ndarray:
        """(time, ant, chan, pol) gains at ``times``; 0 where flagged (the data then are)."""
        mode = "nearest" if self.interp.split(",")[0] == "nearest" else "linear"
        values, ok = kernels.interpolate_in_time(self.times, self.values, self.ok, times, mode)
        values, ok = kernels.fill_flagged_channels(values, ok)
        gains = np.where(ok, values, 0)
        if gains.shape[2] == 1:
            gains = np.broadcast_to(gains, (*gains.shape[:2], n_chan, gains.shape[3]))
        if gains.shape[2] != n_chan or gains.shape[3] < n_pol:
            raise ContimgError("an earlier table's channels or polarisations do not match "
                               "the data: the native engine cannot apply it")  # fmt: skip
        return gains[..., :n_pol]


def _solve(request: SolveRequest, setup: _Setup, reduced: _Reduced) -> caltables.NewSolutions:
    n_block, n_out, n_pol, n_ant, _ = reduced.vis_sum.shape
    weight = reduced.weight_sum.reshape(-1, n_ant, n_ant)
    with np.errstate(divide="ignore", invalid="ignore"):
        vis = np.where(weight > 0, reduced.vis_sum.reshape(weight.shape) / weight, 0)
    usable = kernels.enforce_min_baselines(weight, request.minblperant)
    if not usable.any():
        raise StepFailed(
            f"{n_block} of {n_block} solution interval(s) had unflagged data but none enough "
            f"baselines per antenna (minblperant {request.minblperant}; check uvrange and flags)"
        )
    gains, iterations = kernels.solve_gains(vis, weight, usable, request.phase_only,
                                            MAX_ITERATIONS, TOLERANCE)  # fmt: skip
    # a solve that did not converge or ran to a star (noise, or phases that no antenna
    # gains explain) keeps no solutions, as CASA's keeps none
    usable = usable & ((iterations < MAX_ITERATIONS) & ~kernels.degenerate(gains, usable))[:, None]
    groups = np.arange(len(weight)) // n_pol  # the polarisations of a block solve together
    flat = (-1, n_ant, n_ant)
    snr = kernels.solution_snr(reduced.vis_sum.reshape(flat), weight,
                               reduced.square_sum.reshape(flat), reduced.count.reshape(flat),
                               gains, usable, groups)  # fmt: skip
    ok = usable & (snr > request.minsnr)
    gains = kernels.reference_phase(gains, ok, list(setup.refant_order))
    shape = (n_block, n_out, n_pol, n_ant)
    gains, ok, snr = gains.reshape(shape), ok.reshape(shape), snr.reshape(shape)
    if request.solnorm:
        gains = kernels.normalise_over_channels(gains, ok)
    if request.fillgaps:
        gains, ok = kernels.fill_channel_gaps(gains, ok, request.fillgaps)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(snr > 0, np.abs(gains) / snr, 0.0)
    gains = np.where(ok, gains, 1.0 + 0j)
    refant = np.full(n_block, -1)
    for ant in setup.refant_order[::-1]:
        refant = np.where(ok[:, :, :, ant].any(axis=(1, 2)), ant, refant)
    with np.errstate(divide="ignore", invalid="ignore"):
        times = reduced.time_weight / reduced.weight_total
    # (block, chan, pol, ant) -> (time, ant, chan, pol)
    order = (0, 3, 1, 2)
    return caltables.NewSolutions(
        spw=request.spw,
        time=times,
        field=setup.block_field,
        scan=setup.block_scan,
        refant=refant,
        values=gains.transpose(order),
        flag=~ok.transpose(order),
        snr=np.where(np.isfinite(snr), snr, 1e6).transpose(order),
        error=error.transpose(order),
    )
