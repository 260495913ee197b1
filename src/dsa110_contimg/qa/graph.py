"""Dask graph of the visibility QA pass: every row read once, partial sums per SPW.

One dask-ms dataset per DATA_DESC_ID (fields are split inside each chunk);
each row chunk becomes one call of the pure kernels, and the chunks' partial
sums add up per SPW. Nothing is computed here: callers compute every SPW's
result in a single ``dask.compute``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.phasing.view import (
    add_summed_chunks,
    model_coherence_by_field,
    predicted_model,
)
from dsa110_contimg.qa.visibility_kernels import VisibilityPartials, visibility_partials

OPTIONAL_COLUMNS = ("MODEL_DATA", "CORRECTED_DATA")
REQUIRED_COLUMNS = ("DATA", "FLAG", "WEIGHT", "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW")


@dataclass(frozen=True)
class SpwQA:
    spw: int
    partials: VisibilityPartials
    model_coherence: np.ndarray | None  # (field, chan, 3) model_coherence_partials, or None


@dataclass(frozen=True)
class QAContext:
    """What the QA pass of one MS's row chunks needs besides the chunks."""

    n_field: int
    n_ant: int
    uv_max: float
    view: object  # CalibratorView or None
    unit_weights: bool

    @classmethod
    def of(cls, ms, view=None):
        array = array_of(ms)
        n_field = reads.read_subtable(ms, "FIELD", columns=["NAME"]).sizes["row"]
        return cls(n_field, len(array.names), array.uv_max_m(), view,
                   not reads.weights_meaningful(ms))  # fmt: skip


def chunk_qa(data, model, corrected, flag, weight, ant1, ant2, field_id, uvw, ddid,
             context: QAContext):  # fmt: skip
    """(VisibilityPartials, model coherence or None) of one row chunk of one DATA_DESC_ID;
    ``model`` and ``corrected`` may be None (absent)."""
    view = context.view
    if context.unit_weights:
        weight = np.ones(np.shape(weight), np.float32)
    stale_test = view is not None and model is not None
    if model is None and view is not None:
        model = predicted_model(uvw, field_id, ddid, view)  # not tested against itself
    partials = visibility_partials(
        data, model, corrected, flag, weight, ant1, ant2, field_id, uvw, context.n_field,
        context.n_ant, context.uv_max,
    )  # fmt: skip
    if not stale_test:
        return partials, None
    return partials, model_coherence_by_field(model, uvw, field_id, ant1, ant2, ddid, view)


def add_visibility_qa_graph(ms, view=None, row_chunk=None):
    """Delayed per-SPW results and the optional columns found.

    Returns ``(graph, present)``: ``graph`` is a list of (spw, delayed
    (VisibilityPartials, model coherence or None)); ``present`` the subset of
    ``OPTIONAL_COLUMNS`` the MS has. ``view`` (the calibrator's
    :class:`~dsa110_contimg.phasing.view.CalibratorView`) adds the MODEL_DATA
    vs fresh-prediction test, or, when the MS has no MODEL_DATA, stands in for
    it (predicted per chunk).
    """
    present = [c for c in OPTIONAL_COLUMNS if c in reads.main_columns(ms)]
    xds_list = reads.read_visibility_datasets(
        ms, [*REQUIRED_COLUMNS, *present],
        row_chunk=row_chunk or reads.balanced_row_chunk(ms), group_cols=("DATA_DESC_ID",),
    )  # fmt: skip
    ddid_spw = reads.spw_of_ddid(ms)
    context = QAContext.of(ms, view)
    columns = ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT", "ANTENNA1",
               "ANTENNA2", "FIELD_ID", "UVW")  # fmt: skip
    graph = []
    for ds in xds_list:
        ddid = int(ds.attrs["DATA_DESC_ID"])
        summed = add_summed_chunks(ds, columns, chunk_qa, ddid, context)
        graph.append((int(ddid_spw[ddid]), summed))
    return graph, present


def compute_visibility_qa(ms, view=None, row_chunk=None, scheduler=None):
    """Computed :class:`SpwQA` per SPW (sorted) and the optional columns present."""
    graph, present = add_visibility_qa_graph(ms, view, row_chunk)
    (computed,) = reads.compute_reading([g[1] for g in graph], scheduler)
    return spw_results([g[0] for g in graph], computed), present


def spw_results(spws, computed) -> list:
    """:class:`SpwQA` per SPW (sorted) from the summed (partials, coherence) of each
    dataset of SPW ``spws[i]`` (several DATA_DESC_IDs of one SPW add up)."""
    results = {}
    for spw, (partials, coherence) in zip(spws, computed, strict=True):
        if spw in results:  # several DATA_DESC_IDs of one SPW
            old = results[spw]
            coherence = (
                coherence if old.model_coherence is None
                else old.model_coherence + (0 if coherence is None else coherence)
            )  # fmt: skip
            partials = old.partials + partials
        results[spw] = SpwQA(spw, partials, coherence)
    return [results[s] for s in sorted(results)]


def save_visibility_qa(ms, calibrator, path, primary_beam: bool = True) -> dict:
    """Compute the QA pass of ``ms`` (one sub-MS of a run) and keep it at ``path`` for the
    run's report: the same sums the report's own pass would add up (renamed into place)."""
    from dsa110_contimg.phasing.view import calibrator_view

    view = None if calibrator is None else calibrator_view(ms, calibrator, primary_beam)
    results, present = compute_visibility_qa(ms, view)
    return keep_visibility_qa(results, present, path)


def keep_visibility_qa(results, present, path) -> dict:
    """Keep a QA pass's results at ``path`` (renamed into place) for the run's report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_bytes(pickle.dumps((results, present)))
    os.replace(partial, path)
    return {"qa_spws": [r.spw for r in results]}


def load_visibility_qa(paths):
    """The results of :func:`save_visibility_qa` files joined: (SpwQA per SPW, present)."""
    results, present = {}, set()
    for path in paths:
        kept, spw_present = pickle.loads(Path(path).read_bytes())
        results.update({r.spw: r for r in kept})
        present.update(spw_present)
    return [results[s] for s in sorted(results)], [c for c in OPTIONAL_COLUMNS if c in present]


def spw_visibility_qa_path(run_dir, stem: str, spw: int) -> Path:
    """Where a run keeps one SPW's QA pass, computed as the SPW finished."""
    return Path(run_dir) / "qa" / stem / "visibility-sums" / f"spw{spw:02d}.pickle"


def forget_visibility_qa(run_dir, stem: str) -> None:
    """Remove an earlier run's kept QA sums of ``stem`` from a reused run directory."""
    import shutil

    shutil.rmtree(spw_visibility_qa_path(run_dir, stem, 0).parent, ignore_errors=True)
