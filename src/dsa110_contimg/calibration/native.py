"""The native engine's solve: CASA's gaincal/bandpass parameters in, a CASA caltable out.

The solve rows of one SPW (its solve fields' cross-correlations) are read
once through dask-ms into memory (:class:`SolveData`); each solve of that SPW
assigns them to solution intervals (CASA's grid, ``combine``, the uv range)
and accumulates per interval, channel (``B``, ``K``) or SPW (``G``), correlation
and baseline the sums of
:func:`~dsa110_contimg.calibration.solver_kernels.accumulate`, with the earlier
tables applied on the fly; every interval is then solved at once, flagged
(``minblperant``, ``minsnr`` with CASA's SNR), referenced to the first
available reference antenna, normalised (``solnorm``) and gap-filled
(``fillgaps``), and written into a table CASA itself created, so ``applycal``,
the QA and ``apply`` read it as CASA's own. Delays (``K``) are found from the
same sums by CASA's FFT (:mod:`~dsa110_contimg.calibration.delay_kernels`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.calibration import delay_kernels, table_gains
from dsa110_contimg.calibration import solver_kernels as kernels
from dsa110_contimg.calibration.solve_request import PER_INTEGRATION_S, SolveRequest
from dsa110_contimg.casa.tasks import new_caltable
from dsa110_contimg.errors import ContimgError, StepFailed
from dsa110_contimg.instrument import SPEED_OF_LIGHT_M_S
from dsa110_contimg.ms import caltables, reads
from dsa110_contimg.ms.antennas import antenna_names
from dsa110_contimg.ms.publish import publish_directory

KEEP_WHOLE_CHUNK = 0.9  # fraction of solve rows above which a chunk is not copied
MAX_ITERATIONS = 200
TOLERANCE = 1e-10


def solve_to_caltable(vis: str, caltable: str, request: SolveRequest,
                      data: SolveData | None = None, integration_sums=None) -> dict:  # fmt: skip
    """Solve ``request`` on ``vis`` and write ``caltable`` (published by rename).

    ``data``: the SPW's solve rows already in memory (:func:`read_solve_data`), shared by
    the solves of one SPW; read here when not given. ``integration_sums``: a dict the
    gain solves of one SPW share, holding their sums per integration under what decides
    them, so that solves differing only in interval or minsnr add up the data once.
    """
    started = time.perf_counter()
    if len(request.spws) > 1:
        parts = [_per_integration(read_solve_data(vis, spw, request.fields), request, spw)
                 for spw in request.spws]  # fmt: skip
        setup, reduced = _gather(parts, request)
    else:
        if data is None:
            data = read_solve_data(vis, request.spw, request.fields)
        if integration_sums is not None and request.kind == "G":
            key = dataclasses.replace(request, solint_s=0.0, minsnr=0.0, minblperant=0)
            if key not in integration_sums:
                integration_sums[key] = _per_integration(data, request, request.spw)
            setup, reduced = _gather([integration_sums[key]], request)
        else:
            setup = _setup(data, request)
            reduced = _reduce(data, request, setup)
    accumulated = time.perf_counter()
    if request.kind == "K":
        solutions = _solve_delays(request, setup, reduced, _integrations_per_block(data, setup))
    else:
        solutions = _solve(request, setup, reduced)
    solved = time.perf_counter()
    with publish_directory(caltable) as partial:
        new_caltable(vis, partial, request.kind)
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
    chan_freq: np.ndarray
    row_block: np.ndarray  # (solve row,) interval of each row, -1 for rows not used
    block_time: np.ndarray  # the time, FIELD_ID and SCAN_NUMBER of each interval's first row
    block_field: np.ndarray
    block_scan: np.ndarray
    refant_order: tuple[int, ...]


def _setup(data: SolveData, request: SolveRequest) -> _Setup:
    if data.spw != request.spw or (data.fields and not set(request.fields) <= set(data.fields)):
        raise ValueError("the solve data hold other rows than the request asks for")
    low, high, in_wavelengths = request.uv_range
    uv = data.uv_m * (data.chan_freq.mean() / SPEED_OF_LIGHT_M_S if in_wavelengths else 1.0)
    keep = data.usable & (uv >= low) & (uv <= high)
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
        chan_freq=data.chan_freq,
        row_block=row_block,
        block_time=data.time[keep][first],
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


def _per_integration(data: SolveData, request: SolveRequest, spw: int):
    """(setup, sums) of ``request`` on one SPW's rows, an interval per integration."""
    part = dataclasses.replace(request, solint_s=PER_INTEGRATION_S, spw=spw, spws=(spw,))
    setup = _setup(data, part)
    return setup, _reduce(data, part, setup)


def _gather(parts, request: SolveRequest) -> tuple[_Setup, _Reduced]:
    """:func:`_per_integration` sums (of one SPW, or of each SPW combined) gathered into the
    request's intervals on one grid from the first time of them all (sums add up), as
    CASA's solve of those rows at that interval (``combine='spw'``: of all SPWs)."""
    if len({len(setup.hands) for setup, _ in parts}) > 1:
        raise ContimgError("SPWs combined must have the same parallel hands")
    label = {k: np.concatenate([getattr(setup, f"block_{k}") for setup, _ in parts])
             for k in ("time", "field", "scan")}  # fmt: skip
    interval = kernels.solution_blocks(label["time"], label["field"], label["scan"],
                                       request.solint_s, request.combine_field,
                                       request.combine_scan)  # fmt: skip
    by_interval = np.argsort(interval, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(interval[by_interval]) != 0])
    sums = [np.add.reduceat(np.concatenate([getattr(r, f.name) for _, r in parts])[by_interval],
                            starts, axis=0)
            for f in dataclasses.fields(_Reduced)]  # fmt: skip
    # each interval is labelled by its first integration in time
    order = np.lexsort((np.arange(len(interval)), label["time"]))
    _, first_in_order = np.unique(interval[order], return_index=True)
    first = order[first_in_order]
    setup = dataclasses.replace(parts[0][0], row_block=np.zeros(0, np.int64),
                                block_time=label["time"][first],
                                block_field=label["field"][first],
                                block_scan=label["scan"][first])  # fmt: skip
    return setup, _Reduced(*sums)


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
    priors = [table_gains.TableGains.from_table(path, interp, spwmap, request.spw, setup.n_ant,
                                                setup.chan_freq)
              for path, interp, spwmap in request.priors]  # fmt: skip
    per_channel = request.kind in ("B", "K")
    n_out = setup.n_chan if per_channel else 1
    n_block = int(setup.row_block.max()) + 1
    n_pol = len(setup.hands)
    shape = (n_block, setup.n_ant, setup.n_ant, n_pol, n_out)  # the kernel's layout
    sums = (np.zeros(shape, np.complex128), np.zeros(shape), np.zeros(shape),
            np.zeros(shape, np.int64))  # fmt: skip
    time_weight, weight_total = np.zeros(n_block), np.zeros(n_block)
    chan_out = np.arange(setup.n_chan) if per_channel else np.zeros(setup.n_chan, np.int64)
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
                           kernels.CALMODES[request.calmode], *sums, time_weight,
                           weight_total)  # fmt: skip
    return _Reduced(*kernels.both_triangles(*sums), time_weight, weight_total)


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
    gains, iterations = kernels.solve_gains(vis, weight, usable, request.calmode == "p",
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
    # (block, chan, pol, ant) -> (time, ant, chan, pol)
    order = (0, 3, 1, 2)
    return caltables.NewSolutions(
        spw=request.spw,
        time=_interval_times(reduced),
        field=setup.block_field,
        scan=setup.block_scan,
        refant=refant,
        values=gains.transpose(order),
        flag=~ok.transpose(order),
        snr=np.where(np.isfinite(snr), snr, 1e6).transpose(order),
        error=error.transpose(order),
    )


def _integrations_per_block(data: SolveData, setup: _Setup) -> np.ndarray:
    """How many integrations each solution interval holds."""
    used = setup.row_block >= 0
    pairs = np.unique(np.c_[setup.row_block[used], data.times[1][used]], axis=0)
    return np.bincount(pairs[:, 0], minlength=int(setup.row_block.max()) + 1)


def _solve_delays(request: SolveRequest, setup: _Setup, reduced: _Reduced,
                  integrations: np.ndarray) -> caltables.NewSolutions:  # fmt: skip
    """CASA's KJones: per interval the FFT delay of each antenna's baseline to the first
    reference antenna; no SNR, ``minsnr`` or ``minblperant`` (CASA's delay solve has none);
    the reference antenna 0 ns and kept, antennas without a baseline to it flagged."""
    ref = setup.refant_order[0]
    to_ref = reduced.vis_sum[..., ref]  # (block, chan, pol, ant): sum w V M* of (ant, ref)
    weight = reduced.weight_sum[..., ref]
    n_block, n_chan, n_pol, n_ant = to_ref.shape
    delays, found = np.zeros((n_block, n_pol * n_ant)), np.zeros((n_block, n_pol * n_ant), bool)
    for block in range(n_block):
        series = to_ref[block].reshape(n_chan, -1)
        if integrations[block] > 1:
            delays[block], found[block] = delay_kernels.multiband_delays(series, setup.chan_freq)
        else:
            block_weight = weight[block].reshape(n_chan, -1)
            with np.errstate(divide="ignore", invalid="ignore"):
                averaged = np.where(block_weight > 0, series / block_weight, 0)
            delays[block], found[block] = delay_kernels.single_integration_delays(
                averaged, setup.chan_freq
            )
    delays, found = delays.reshape(n_block, n_pol, n_ant), found.reshape(n_block, n_pol, n_ant)
    delays[:, :, ref], found[:, :, ref] = 0.0, True
    # (block, pol, ant) -> (time, ant, chan, pol); delays not found are 0, as CASA's
    values = delays.transpose(0, 2, 1)[:, :, None, :]
    return caltables.NewSolutions(
        spw=request.spw,
        time=_interval_times(reduced),
        field=setup.block_field,
        scan=setup.block_scan,
        refant=np.full(n_block, -1),  # CASA's delay tables name none
        values=values,
        flag=~found.transpose(0, 2, 1)[:, :, None, :],
        snr=np.zeros(values.shape),
        error=np.zeros(values.shape),
    )


def _interval_times(reduced: _Reduced) -> np.ndarray:
    """Each interval's time: its data's weighted mean time, as CASA labels a solution."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return reduced.time_weight / reduced.weight_total
