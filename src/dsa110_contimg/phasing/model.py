"""The calibrator model per field: vectorized predict over dask-ms datasets.

Each row of an SPW's dataset is predicted with its own field's PHASE_DIR
(so all 24 per-integration fields are right, unlike CASA ``ft`` on a
multi-field MS; one dataset per SPW, not per field, as small reads and
writes cost more than the bytes), the w-term, the calibrator's spectrum and optionally the
Airy primary beam toward the calibrator from the field's pointing
(REFERENCE_DIR). Chunks follow the dataset's row chunks, so memory is bounded.
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
from daskms import xds_to_table

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.sky.beam import airy_power_response
from dsa110_contimg.sky.calibrators import Calibrator
from dsa110_contimg.sky.coordinates import angular_separation


def stokes_i_weights(corr_types) -> np.ndarray:
    """(corr,) float: 1 for correlations that see Stokes I (I, RR, LL, XX, YY), 0 else.

    As CASA's setjy writes an unpolarised source: the parallel hands hold the
    flux, the cross-hands (RL, LR, XY, YX) zero.
    """
    return np.array([1.0 if int(c) in reads.PARALLEL_HAND_CODES else 0.0 for c in corr_types])


def apparent_flux(
    calibrator: Calibrator, freq_hz, pointing_rad, primary_beam: bool, dish_diameter_m: float
):
    """(chan,) flux density seen from ``pointing_rad`` (ra, dec) by dishes of that size, Jy."""
    flux = np.asarray(calibrator.flux_at(freq_hz), dtype=float)
    if primary_beam:
        offset = angular_separation(
            pointing_rad[0], pointing_rad[1], calibrator.ra_rad, calibrator.dec_rad
        )
        flux = flux * airy_power_response(offset, freq_hz, dish_diameter_m)
    return flux


class ModelContext:
    """Per-MS lookups the predict needs: field directions, SPW frequencies, correlations, dishes."""

    def __init__(self, ms):
        field = reads.read_subtable(ms, "FIELD", columns=["PHASE_DIR", "REFERENCE_DIR"])
        self.phase_dir_rad = field.PHASE_DIR.values[:, 0, :]
        self.pointing_rad = field.REFERENCE_DIR.values[:, 0, :]
        self.freq_hz = reads.chan_freq_hz(ms)
        self.ddid_spw = reads.spw_of_ddid(ms)
        self.corr_weights = [stokes_i_weights(c) for c in reads.corr_types_of_ddid(ms)]
        self.dish_diameter_m = array_of(ms).dish_diameter_m

    def apparent_flux(self, calibrator, field_id: int, freq_hz, primary_beam: bool):
        """(chan,) flux of ``calibrator`` seen by field ``field_id``'s pointing, Jy."""
        return apparent_flux(
            calibrator, freq_hz, self.pointing_rad[field_id], primary_beam, self.dish_diameter_m
        )


def _model_block(uvw, field_id, ddid, view):
    from dsa110_contimg.phasing.view import predicted_model

    return predicted_model(uvw, field_id, ddid, view)


def model_datasets(ms, calibrator: Calibrator, primary_beam: bool = True, row_chunk=None,
                   at_phase_centre: bool = False, columns=(), view=None) -> list:  # fmt: skip
    """One dataset per DATA_DESC_ID: ``columns`` as read and MODEL_DATA predicted (lazy).

    Each row is predicted with its own field's phase centre and pointing.
    ``at_phase_centre`` places the source at each field's phase centre instead
    of its true position: right only when the field was rephased to it.
    ``view``: the calibrator's :class:`~dsa110_contimg.phasing.view.CalibratorView`
    of ``ms`` when the caller has it already.
    """
    from dsa110_contimg.phasing.view import calibrator_view

    view = view or calibrator_view(ms, calibrator, primary_beam)
    if at_phase_centre:
        centre = np.zeros_like(view.lmn_by_field)
        centre[..., 2] = 1.0
        view = dataclasses.replace(view, lmn_by_field=centre)
    xds_list = reads.read_visibility_datasets(
        ms, list(dict.fromkeys(["UVW", "FIELD_ID", *columns])),
        row_chunk=row_chunk or reads.DEFAULT_ROW_CHUNK, group_cols=("DATA_DESC_ID",),
    )  # fmt: skip
    out = []
    for ds in xds_list:
        ddid = int(ds.attrs["DATA_DESC_ID"])
        n_chan = len(view.freq_hz[int(view.ddid_spw[ddid])])
        model = da.blockwise(
            _model_block, "rfc", ds.UVW.data, "rx", ds.FIELD_ID.data, "r",
            new_axes={"f": n_chan, "c": len(view.corr_weights[ddid])}, concatenate=True,
            dtype=np.complex64, ddid=ddid, view=view,
        )  # fmt: skip
        out.append(ds.assign(MODEL_DATA=(("row", "chan", "corr"), model)))
    return out


def model_writes(datasets, ms):
    """Lazy writes of the MODEL_DATA of :func:`model_datasets` into ``ms`` (created when
    missing); compute the result to write."""
    only_model = [ds.drop_vars([v for v in ds.data_vars if v != "MODEL_DATA"]) for ds in datasets]
    return xds_to_table(only_model, str(ms), columns=["MODEL_DATA"])


def add_model_write_graph(
    ms,
    calibrator: Calibrator,
    primary_beam: bool = True,
    row_chunk=None,
    at_phase_centre: bool = False,
):
    """Lazy writes of MODEL_DATA for every field (:func:`model_datasets`); compute the
    result to write. Rewriting is idempotent: the same inputs give the same column."""
    return model_writes(
        model_datasets(ms, calibrator, primary_beam, row_chunk, at_phase_centre), ms
    )
