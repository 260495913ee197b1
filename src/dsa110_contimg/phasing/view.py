"""The calibrator as every field of an MS sees it, and what one row chunk makes of it.

The phasing check and the QA pass both compare visibilities with the
calibrator: :func:`calibrator_view` computes once per MS its direction
cosines from each field's phase centre and its apparent flux per field and
SPW; :func:`predicted_model` and :func:`model_coherence_by_field` are the
per-chunk steps both graphs call (a prediction where MODEL_DATA is missing;
MODEL_DATA against a fresh prediction for the stale-model test), and
:func:`map_row_chunks` / :func:`sum_chunk_results` the chunk plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np

from dsa110_contimg.phasing.model import ModelContext
from dsa110_contimg.qa import kernels
from dsa110_contimg.sky.coordinates import direction_cosines
from dsa110_contimg.sky.predict_kernels import point_source_model, point_source_visibilities


@dataclass(frozen=True)
class CalibratorView:
    """What a prediction of the calibrator needs, per field."""

    lmn_by_field: np.ndarray  # (field, 1, 3)
    flux_by_field_spw: dict  # spw -> (field, 1, chan) apparent flux (Jy)
    freq_hz: list  # per SPW (chan,)
    corr_weights: list  # per DATA_DESC_ID (corr,): Stokes I share of each correlation
    ddid_spw: np.ndarray  # SPW of each DATA_DESC_ID

    @property
    def n_field(self) -> int:
        return len(self.lmn_by_field)


def calibrator_view(ms, calibrator, primary_beam: bool, moved_fields=None) -> CalibratorView:
    """The calibrator as the fields of ``ms`` see it; ``moved_fields`` {field: (ra, dec)}
    gives fields a phase centre other than their PHASE_DIR (what a rephase will set)."""
    context = ModelContext(ms)
    n_field = len(context.phase_dir_rad)
    phase_dir = context.phase_dir_rad.copy()
    for field_id, direction in (moved_fields or {}).items():
        phase_dir[int(field_id)] = direction
    lmn = np.stack(
        direction_cosines(calibrator.ra_rad, calibrator.dec_rad,
                          phase_dir[:, 0], phase_dir[:, 1]),
        axis=-1,
    )[:, None, :]  # fmt: skip
    flux = {
        spw: np.stack(
            [context.apparent_flux(calibrator, f, freq, primary_beam) for f in range(n_field)]
        )[:, None, :]  # fmt: skip
        for spw, freq in enumerate(context.freq_hz)
    }
    return CalibratorView(lmn, flux, context.freq_hz, context.corr_weights, context.ddid_spw)


def coherence_channels(n_chan: int) -> np.ndarray:
    """First, middle and last channel: enough to see a wrong phase centre."""
    return np.unique([0, n_chan // 2, n_chan - 1])


def predicted_model(uvw, field_id, ddid: int, view: CalibratorView) -> np.ndarray:
    """(row, chan, corr) complex64 model of the calibrator for rows of any fields."""
    spw = int(view.ddid_spw[ddid])
    return point_source_model(
        uvw, field_id, view.lmn_by_field[:, 0, :], view.freq_hz[spw],
        view.flux_by_field_spw[spw][:, 0, :], view.corr_weights[ddid],
    )  # fmt: skip


def model_coherence_by_field(model, uvw, field_id, ant1, ant2, ddid: int, view: CalibratorView,
                             wanted_fields=None) -> np.ndarray:  # fmt: skip
    """(field, chan, 3) partial sums of MODEL_DATA against a fresh prediction.

    On the :func:`coherence_channels` of the SPW, parallel hands only;
    fields not in ``wanted_fields`` (a boolean mask) are skipped.
    """
    spw = int(view.ddid_spw[ddid])
    freq = view.freq_hz[spw]
    chans = coherence_channels(len(freq))
    coherence = np.zeros((view.n_field, len(chans), 3))
    field_id = np.asarray(field_id)
    for f in np.unique(field_id):
        if wanted_fields is not None and not wanted_fields[f]:
            continue
        rows = np.flatnonzero(field_id == f)
        predicted = point_source_visibilities(
            uvw[rows], view.lmn_by_field[f], freq[chans], view.flux_by_field_spw[spw][f][:, chans]
        )
        coherence[f] += kernels.model_coherence_partials(
            model[rows[:, None], chans], predicted, ant1[rows] != ant2[rows],
            view.corr_weights[ddid],
        )  # fmt: skip
    return coherence


def map_row_chunks(ds, columns, chunk_function, *args) -> list:
    """One pure delayed call of ``chunk_function(*blocks, *args)`` per row chunk of ``ds``.

    A column missing from ``ds`` arrives as None.
    """
    n_blocks = len(ds[columns[0]].data.to_delayed().ravel())
    blocks = [ds[c].data.to_delayed().ravel() if c in ds else [None] * n_blocks for c in columns]
    return [
        dask.delayed(chunk_function, pure=True)(*chunk, *args)
        for chunk in zip(*blocks, strict=True)
    ]


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def sum_chunk_results(results):
    """Element-wise sum of the chunks' result tuples (None where a chunk had nothing)."""
    total = results[0]
    for result in results[1:]:
        total = tuple(_add(a, b) for a, b in zip(total, result, strict=True))
    return total


def add_summed_chunks(ds, columns, chunk_function, *args):
    """Delayed sum over the row chunks of ``ds`` of ``chunk_function``'s result tuples."""
    return dask.delayed(sum_chunk_results)(map_row_chunks(ds, columns, chunk_function, *args))
