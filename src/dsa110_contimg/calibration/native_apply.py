"""The native engine's apply: CORRECTED_DATA of one sub-MS from CASA tables, via dask-ms.

What ``applycal(applymode='calflag', calwt=False)`` does for the recipe's tables
(bandpass ``nearest`` in time, gains ``linear`` in amplitude and phase, the
nearest solution beyond the ends): every table's gains are interpolated once
to the data's times, multiplied, inverted, and applied chunk by chunk
(:func:`~dsa110_contimg.calibration.apply_kernels.apply_gains`); CORRECTED_DATA
and FLAG are written back through dask-ms. Each sub-MS is its own table, so
the SPWs apply side by side; delays become per-channel phases about their
table's frequency. Anything else (tables on other channels, weights scaled by
the gains) is left to CASA's ``applycal``:
:func:`native_tables` says why.
"""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
from daskms import xds_to_table

from dsa110_contimg.calibration import apply_kernels
from dsa110_contimg.calibration.table_gains import TableGains
from dsa110_contimg.ms import caltables, reads
from dsa110_contimg.ms.antennas import antenna_names

KINDS = ("B", "G", "T", "K")


def native_tables(vis: str, spw: int, gaintable, interp, spwmap, calwt: bool):
    """The tables' solutions for SPW ``spw`` of ``vis``, each read once; or, as a string,
    why these tables must go through CASA's applycal instead."""
    if calwt:
        return "weights scaled by the gains (calwt)"
    kinds = [caltables.caltable_info(path).kind for path in gaintable]
    if any(kind not in KINDS for kind in kinds):
        return f"{', '.join(k for k in kinds if k not in KINDS)} tables"
    n_ant, chan_freq = len(antenna_names(vis)), reads.chan_freq_hz(vis)[spw]
    n_chan = len(chan_freq)
    interp = list(interp) + [""] * len(gaintable)
    spwmap = list(spwmap) + [[]] * len(gaintable)
    tables = [TableGains.from_table(path, i, m, spw, n_ant, chan_freq)
              for path, i, m in zip(gaintable, interp, spwmap, strict=False)]  # fmt: skip
    if any(k == "B" and t.values.shape[2] != n_chan for k, t in zip(kinds, tables, strict=True)):
        return "a bandpass on other channels than the data's"
    return tables


def apply_to_corrected(vis: str, spw: int, tables: list[TableGains], qa=None) -> dict:
    """Write CORRECTED_DATA and FLAG of SPW ``spw`` of ``vis`` from the tables' solutions
    (:func:`native_tables`).

    ``qa``, a :class:`~dsa110_contimg.qa.graph.QAContext` of ``vis``, adds the QA pass
    over the corrected chunks as they are written (DATA, MODEL_DATA, CORRECTED_DATA and
    the new FLAG, what reading them back would give): the detail's ``qa`` is then
    (SpwQA per SPW, the optional columns present).
    """
    from dsa110_contimg.phasing.view import sum_chunk_results
    from dsa110_contimg.qa import graph as qa_graph

    started = time.perf_counter()
    spw_of = np.asarray(reads.spw_of_ddid(vis))
    ddids = {int(d) for d in np.flatnonzero(spw_of == spw)}
    corr = reads.corr_types_of_ddid(vis)[min(ddids)]
    hands = [i for i, c in enumerate(corr) if int(c) in reads.PARALLEL_HAND_CODES]
    feeds = apply_kernels.correlation_feeds(corr, hands)
    if feeds is None:
        raise ValueError(f"correlations {list(corr)} have feeds without solutions")
    n_ant, n_chan = len(antenna_names(vis)), len(reads.chan_freq_hz(vis)[spw])
    columns = list(_APPLY_COLUMNS)
    has_model = "MODEL_DATA" in reads.main_columns(vis)
    if qa is not None:
        columns += [*(["MODEL_DATA"] if has_model else []), *_QA_COLUMNS]
    datasets = [ds for ds in reads.read_visibility_datasets(vis, columns,
                                                            group_cols=["DATA_DESC_ID"])
                if int(ds.attrs["DATA_DESC_ID"]) in ddids]  # fmt: skip
    (row_times,) = reads.compute_reading([ds.TIME.data for ds in datasets])
    times = np.unique(np.concatenate(row_times))
    gains = np.ones((len(times), n_ant, n_chan, len(hands)), np.complex128)
    for table in tables:
        gains = gains * table.at(times, len(hands), n_chan)
    inverse = apply_kernels.inverse_gains(gains)
    written, sums = [], []
    for ds in datasets:
        corrected, chunk_qa = _corrected_dataset(ds, times, inverse, feeds, qa)
        written.append(corrected)
        if qa is not None:
            sums.append(dask.delayed(sum_chunk_results)(chunk_qa))
    ((_, computed),) = reads.compute_reading(
        (xds_to_table(written, str(vis), columns=["CORRECTED_DATA", "FLAG"]), sums)
    )
    detail = {"engine": "native", "apply_seconds": time.perf_counter() - started}
    if qa is not None:
        spws = [int(spw_of[int(ds.attrs["DATA_DESC_ID"])]) for ds in datasets]
        present = [*(["MODEL_DATA"] if has_model else []), "CORRECTED_DATA"]
        detail["qa"] = (qa_graph.spw_results(spws, computed), present)
    return detail


_APPLY_COLUMNS = ("DATA", "FLAG", "TIME", "ANTENNA1", "ANTENNA2")
_QA_COLUMNS = ("WEIGHT", "FIELD_ID", "UVW")


def _corrected_dataset(ds, times, inverse, feeds, qa=None):
    """The dataset of CORRECTED_DATA and FLAG to write, and the chunks' delayed QA results
    (empty without ``qa``)."""
    names = list(_APPLY_COLUMNS)
    if qa is not None:
        names += ["MODEL_DATA", *_QA_COLUMNS]
    blocks = [ds[c].data.to_delayed().ravel() if c in ds else [None] * ds.DATA.data.numblocks[0]
              for c in names]  # fmt: skip
    ddid = int(ds.attrs["DATA_DESC_ID"])
    corrected, flags, chunk_qa = [], [], []
    shape_rest, data_dtype = ds.DATA.shape[1:], ds.DATA.dtype
    for rows, chunk in zip(ds.DATA.data.chunks[0], zip(*blocks, strict=True), strict=True):
        results = dask.delayed(_apply_chunk, pure=True, nout=3)(*chunk, times, inverse, feeds,
                                                                 ddid, qa)  # fmt: skip
        corrected.append(da.from_delayed(results[0], (rows, *shape_rest), data_dtype))
        flags.append(da.from_delayed(results[1], (rows, *shape_rest), bool))
        chunk_qa.append(results[2])
    dims = ("row", "chan", "corr")
    written = ds.drop_vars(list(ds.data_vars)).assign(  # ROWID stays: rows are rewritten
        CORRECTED_DATA=(dims, da.concatenate(corrected).rechunk(ds.DATA.data.chunks)),
        FLAG=(dims, da.concatenate(flags).rechunk(ds.DATA.data.chunks)),
    )
    return written, chunk_qa if qa is not None else []


def _apply_chunk(data, flag, row_time, ant1, ant2, *rest):
    """(CORRECTED_DATA, FLAG, QA of the chunk or None) of one row chunk; ``rest`` is
    (times, inverse, feeds, ddid, qa), after MODEL_DATA, WEIGHT, FIELD_ID and UVW with ``qa``."""
    from dsa110_contimg.qa.graph import chunk_qa

    *qa_columns, times, inverse, feeds, ddid, qa = rest
    corrected = np.empty_like(data)
    flag_out = np.empty_like(flag)
    apply_kernels.apply_gains(data, flag, ant1, ant2, np.searchsorted(times, row_time), inverse,
                              feeds, corrected, flag_out)  # fmt: skip
    if qa is None:
        return corrected, flag_out, None
    model, weight, field_id, uvw = qa_columns
    sums = chunk_qa(data, model, corrected, flag_out, weight, ant1, ant2, field_id, uvw, ddid, qa)
    return corrected, flag_out, sums
