"""The calibrator model per field: vectorized predict over dask-ms datasets.

Each (FIELD_ID, DATA_DESC_ID) dataset is predicted with its own field's
PHASE_DIR (so all 24 per-integration fields are right, unlike CASA ``ft``
on a multi-field MS), the w-term, the calibrator's spectrum and optionally the
Airy primary beam toward the calibrator from the field's pointing
(REFERENCE_DIR). Chunks follow the dataset's row chunks, so memory is bounded.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from daskms import xds_to_table

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.sky.beam import airy_power_response
from dsa110_contimg.sky.calibrators import Calibrator
from dsa110_contimg.sky.coordinates import angular_separation, direction_cosines
from dsa110_contimg.sky.predict_kernels import point_source_visibilities


def _predict_block(uvw, lmn, freq_hz, flux_jy, corr_weights):
    vis = point_source_visibilities(uvw, lmn, freq_hz, flux_jy)
    return (vis[:, :, None] * corr_weights[None, None, :]).astype(np.complex64)


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


def predict_dataset(
    uvw,
    calibrator,
    phase_dir_rad,
    pointing_rad,
    freq_hz,
    corr_weights,
    primary_beam,
    dish_diameter_m: float,
    at_phase_centre: bool = False,
):
    """Lazy (row, chan, corr) complex64 model for rows sharing one field and SPW.

    ``uvw`` is the dataset's (row, 3) dask array in metres; ``freq_hz`` (chan,);
    ``corr_weights`` (corr,) the share of Stokes I in each correlation.
    ``at_phase_centre`` places the source at the field's phase centre instead
    of its true position: right only when the field was rephased to it.
    """
    if at_phase_centre:
        l, m, n = 0.0, 0.0, 1.0
    else:
        l, m, n = direction_cosines(
            calibrator.ra_rad, calibrator.dec_rad, phase_dir_rad[0], phase_dir_rad[1]
        )
    lmn = np.array([[l, m, n]])
    flux = apparent_flux(calibrator, freq_hz, pointing_rad, primary_beam, dish_diameter_m)
    flux = flux[None, :]
    return da.blockwise(
        _predict_block,
        "rfc",
        uvw,
        "rx",
        new_axes={"f": len(freq_hz), "c": len(corr_weights)},
        concatenate=True,
        dtype=np.complex64,
        lmn=lmn,
        freq_hz=np.asarray(freq_hz, dtype=float),
        flux_jy=flux,
        corr_weights=np.asarray(corr_weights, dtype=float),
    )


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

    def predict(self, ds, calibrator, primary_beam, at_phase_centre=False):
        """Lazy model for dataset ``ds`` (needs UVW)."""
        field_id = ds.attrs["FIELD_ID"]
        ddid = int(ds.attrs["DATA_DESC_ID"])
        freq = self.freq_hz[int(self.ddid_spw[ddid])]
        return predict_dataset(
            ds.UVW.data,
            calibrator,
            self.phase_dir_rad[field_id],
            self.pointing_rad[field_id],
            freq,
            self.corr_weights[ddid],
            primary_beam,
            self.dish_diameter_m,
            at_phase_centre,
        )


def add_model_write_graph(
    ms,
    calibrator: Calibrator,
    primary_beam: bool = True,
    row_chunk=None,
    at_phase_centre: bool = False,
):
    """Lazy writes of MODEL_DATA for every field; compute the result to write.

    MODEL_DATA is created when missing. Rewriting is idempotent: the same
    inputs give the same column.
    """
    xds_list = reads.read_visibility_datasets(
        ms, ["UVW", "FLAG"], row_chunk=row_chunk or reads.DEFAULT_ROW_CHUNK
    )
    context = ModelContext(ms)
    out = []
    for ds in xds_list:
        model = context.predict(ds, calibrator, primary_beam, at_phase_centre)
        out.append(
            ds.drop_vars(["UVW", "FLAG"]).assign(MODEL_DATA=(("row", "chan", "corr"), model))
        )
    return xds_to_table(out, str(ms), columns=["MODEL_DATA"])
