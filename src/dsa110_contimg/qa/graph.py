"""Dask graph of the visibility QA pass: every row read once, partial sums per SPW.

One dask-ms dataset per DATA_DESC_ID (fields are split inside each chunk);
each row chunk becomes one call of the pure kernels, and the chunks' partial
sums add up per SPW. Nothing is computed here: callers compute every SPW's
result in a single ``dask.compute``.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.phasing.check import coherence_channels
from dsa110_contimg.phasing.model import ModelContext
from dsa110_contimg.qa import kernels
from dsa110_contimg.qa.visibility_kernels import VisibilityPartials, visibility_partials
from dsa110_contimg.sky.coordinates import direction_cosines
from dsa110_contimg.sky.predict_kernels import point_source_visibilities

OPTIONAL_COLUMNS = ("MODEL_DATA", "CORRECTED_DATA")
REQUIRED_COLUMNS = ("DATA", "FLAG", "WEIGHT", "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW")


@dataclass(frozen=True)
class StaleModelContext:
    """What a fresh prediction of the calibrator needs, per field (for the stale-model test)."""

    lmn_by_field: np.ndarray  # (field, 1, 3)
    flux_by_field_spw: dict  # spw -> (field, 1, chan) apparent flux (Jy)
    freq_hz: list  # per SPW (chan,)
    corr_weights: list  # per DATA_DESC_ID (corr,): Stokes I share of each correlation


@dataclass(frozen=True)
class SpwQA:
    spw: int
    partials: VisibilityPartials
    model_coherence: np.ndarray | None  # (field, chan, 3) model_coherence_partials, or None


def stale_model_context(ms, calibrator, primary_beam: bool) -> StaleModelContext:
    context = ModelContext(ms)
    n_field = len(context.phase_dir_rad)
    lmn = np.stack(
        direction_cosines(calibrator.ra_rad, calibrator.dec_rad,
                          context.phase_dir_rad[:, 0], context.phase_dir_rad[:, 1]),
        axis=-1,
    )[:, None, :]  # fmt: skip
    flux = {
        spw: np.stack(
            [context.apparent_flux(calibrator, f, freq, primary_beam) for f in range(n_field)]
        )[:, None, :]  # fmt: skip
        for spw, freq in enumerate(context.freq_hz)
    }
    return StaleModelContext(lmn, flux, context.freq_hz, context.corr_weights)


def _predicted_model(uvw, field_id, spw, ddid, context: StaleModelContext):
    """(row, chan, corr) model of the calibrator where the MS has no MODEL_DATA."""
    freq = context.freq_hz[spw]
    weights = context.corr_weights[ddid]
    model = np.zeros((len(field_id), len(freq), len(weights)), np.complex64)
    for f in np.unique(field_id):
        rows = np.flatnonzero(field_id == f)
        vis = point_source_visibilities(
            uvw[rows], context.lmn_by_field[f], freq, context.flux_by_field_spw[spw][f]
        )
        model[rows] = vis[:, :, None] * weights[None, None, :]
    return model


def _chunk_qa(
    data, model, corrected, flag, weight, ant1, ant2, field_id, uvw,
    spw, ddid, n_field, n_ant, uv_max, stale_context, unit_weights,
):  # fmt: skip
    if unit_weights:
        weight = np.ones(np.shape(weight), np.float32)
    if model is None and stale_context is not None:
        model = _predicted_model(uvw, np.asarray(field_id), spw, ddid, stale_context)
        stale_context = None  # a prediction is not tested against itself
    partials = visibility_partials(
        data, model, corrected, flag, weight, ant1, ant2, field_id, uvw, n_field, n_ant, uv_max
    )
    if model is None or stale_context is None:
        return partials, None
    freq = stale_context.freq_hz[spw]
    chans = coherence_channels(len(freq))
    coherence = np.zeros((n_field, len(chans), 3))
    field_id = np.asarray(field_id)
    for f in np.unique(field_id):
        rows = np.flatnonzero(field_id == f)
        predicted = point_source_visibilities(
            uvw[rows], stale_context.lmn_by_field[f], freq[chans],
            stale_context.flux_by_field_spw[spw][f][:, chans],
        )  # fmt: skip
        coherence[f] += kernels.model_coherence_partials(
            model[rows[:, None], chans], predicted, ant1[rows] != ant2[rows],
            stale_context.corr_weights[ddid],
        )  # fmt: skip
    return partials, coherence


def _sum_chunks(results):
    partials = results[0][0]
    for p, _ in results[1:]:
        partials = partials + p
    coherences = [c for _, c in results if c is not None]
    return partials, (sum(coherences) if coherences else None)


def add_visibility_qa_graph(ms, stale_context=None, row_chunk=None):
    """Delayed per-SPW results and the optional columns found.

    Returns ``(graph, present)``: ``graph`` is a list of (spw, delayed
    (VisibilityPartials, model coherence or None)); ``present`` the subset of
    ``OPTIONAL_COLUMNS`` the MS has. ``stale_context`` (from
    :func:`stale_model_context`) adds the MODEL_DATA vs fresh-prediction test,
    or, when the MS has no MODEL_DATA, stands in for it (predicted per chunk).
    """
    present = [c for c in OPTIONAL_COLUMNS if c in reads.main_columns(ms)]
    xds_list = reads.read_visibility_datasets(
        ms, [*REQUIRED_COLUMNS, *present],
        row_chunk=row_chunk or reads.balanced_row_chunk(ms), group_cols=("DATA_DESC_ID",),
    )  # fmt: skip
    ddid_spw = reads.spw_of_ddid(ms)
    n_field = reads.read_subtable(ms, "FIELD", columns=["NAME"]).sizes["row"]
    n_ant = reads.read_subtable(ms, "ANTENNA", columns=["NAME"]).sizes["row"]
    uv_max = array_of(ms).uv_max_m()
    unit_weights = not reads.weights_meaningful(ms)
    graph = []
    for ds in xds_list:
        ddid = int(ds.attrs["DATA_DESC_ID"])
        spw = int(ddid_spw[ddid])
        n_blocks = len(ds.DATA.data.to_delayed().ravel())

        def blocks(column, ds=ds, n_blocks=n_blocks):
            if column not in ds:
                return [None] * n_blocks
            return ds[column].data.to_delayed().ravel()

        columns = ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT", "ANTENNA1",
                   "ANTENNA2", "FIELD_ID", "UVW")  # fmt: skip
        chunk_results = [
            dask.delayed(_chunk_qa, pure=True)(
                *args, spw, ddid, n_field, n_ant, uv_max, stale_context, unit_weights
            )
            for args in zip(*(blocks(c) for c in columns), strict=True)
        ]
        graph.append((spw, dask.delayed(_sum_chunks)(chunk_results)))
    return graph, present


def compute_visibility_qa(ms, stale_context=None, row_chunk=None, scheduler=None):
    """Computed :class:`SpwQA` per SPW (sorted) and the optional columns present."""
    graph, present = add_visibility_qa_graph(ms, stale_context, row_chunk)
    (computed,) = reads.compute_reading([g[1] for g in graph], scheduler)
    results = {}
    for (spw, _), (partials, coherence) in zip(graph, computed, strict=True):
        if spw in results:  # several DATA_DESC_IDs of one SPW
            old = results[spw]
            coherence = (
                coherence if old.model_coherence is None
                else old.model_coherence + (0 if coherence is None else coherence)
            )  # fmt: skip
            partials = old.partials + partials
        results[spw] = SpwQA(spw, partials, coherence)
    return [results[s] for s in sorted(results)], present
