"""The native engine's prepare of one SPW: copy, rephase, flag and model in one pass.

CASA's recipe goes over each SPW three times before solving: the copy (split
or phaseshift), flagdata adding the flags of autocorrelations and zeros, and
the model step writing MODEL_DATA and checking it against DATA. Here each block
of rows read for the copy (:func:`~dsa110_contimg.phasing.shift.copy_rephased`)
is rephased, flagged (:func:`~dsa110_contimg.calibration.native_flag.added_flags`),
given the calibrator's model (:func:`~dsa110_contimg.phasing.view.predicted_model`)
and summed for the phase-centre check
(:func:`~dsa110_contimg.phasing.check.spw_chunk_partials`) before it is written:
the same columns, the same report from the sums, one pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.calibration.native_flag import NATIVE_MODES, added_flags
from dsa110_contimg.phasing.check import spw_chunk_partials
from dsa110_contimg.phasing.shift import copy_rephased
from dsa110_contimg.phasing.view import calibrator_view, predicted_model
from dsa110_contimg.sky.calibrators import Calibrator


@dataclass(frozen=True)
class ModelInCopy:
    """The model step's work done in the copy: what to predict and which fields to check."""

    calibrator: Calibrator
    check_fields: tuple
    primary_beam: bool = True
    at_phase_centre: bool = False
    unit_weights: bool = False  # the MS's WEIGHT says nothing: every visibility counts alike


def prepare_spw(vis, outputvis, shifted_fields, ra_rad: float, dec_rad: float, spw: int,
                field: str, flag_modes=(), model: ModelInCopy | None = None) -> dict:  # fmt: skip
    """Copy SPW ``spw`` of ``vis`` (fields ``field``) to ``outputvis``, rephasing
    ``shifted_fields`` to (ra, dec), adding the flags of ``flag_modes`` (a subset of
    :data:`NATIVE_MODES`) and, with ``model``, writing MODEL_DATA.

    Returns the copy's detail, with ``flagged`` (the modes applied) and, with
    ``model``, ``phasing_sums``: [(spw, partials, coherence)] for
    :func:`~dsa110_contimg.phasing.check.phasing_report`.
    """
    flag_modes = sorted(flag_modes)
    if not set(flag_modes) <= NATIVE_MODES:
        raise ValueError(f"modes {sorted(set(flag_modes) - NATIVE_MODES)} are CASA's")
    read_columns = ["FLAG", "FLAG_ROW", "ANTENNA1", "ANTENNA2"] if flag_modes else []
    add_columns, view, model_view, wanted, sums = [], None, None, None, {}
    if model is not None:
        view = calibrator_view(vis, model.calibrator, model.primary_beam,
                               {f: (ra_rad, dec_rad) for f in shifted_fields})  # fmt: skip
        model_view = view
        if model.at_phase_centre:  # the model there; the check against the true position
            centre = np.zeros_like(view.lmn_by_field)
            centre[..., 2] = 1.0
            model_view = dataclasses.replace(view, lmn_by_field=centre)
        read_columns = list(dict.fromkeys([*read_columns, "FLAG", "WEIGHT", "ANTENNA1",
                                           "ANTENNA2"]))  # fmt: skip
        add_columns = ["MODEL_DATA"]
        wanted = np.zeros(view.n_field, bool)
        wanted[list(model.check_fields)] = True

    def also(block):
        out = {}
        if flag_modes:
            out["FLAG"], out["FLAG_ROW"] = added_flags(
                block["DATA"], block["FLAG"], block["FLAG_ROW"], block["ANTENNA1"],
                block["ANTENNA2"], flag_modes,
            )  # fmt: skip
        if model is not None:
            out["MODEL_DATA"] = _model_and_sums({**block, **out}, model_view, view, wanted,
                                                model.unit_weights, sums)  # fmt: skip
        return out

    detail = copy_rephased(vis, outputvis, shifted_fields, ra_rad, dec_rad, spw=str(spw),
                           field=field, also=also if flag_modes or model else None,
                           read_columns=read_columns, add_columns=add_columns)  # fmt: skip
    detail["flagged"] = flag_modes
    if model is not None:
        detail["phasing_sums"] = [(s, p, c) for s, (p, c) in sorted(sums.items())]
    return detail


def _model_and_sums(block, model_view, view, wanted, unit_weights, sums) -> np.ndarray:
    """MODEL_DATA of a block of rows (predicted in ``model_view``); its check partials
    (against ``view``) added to ``sums`` {spw: [partials, coherence]}."""
    model = np.empty(block["DATA"].shape, np.complex64)
    ddid_of_rows = block["DATA_DESC_ID"]
    for ddid in np.unique(ddid_of_rows):
        rows = np.flatnonzero(ddid_of_rows == ddid)
        if len(rows) == len(ddid_of_rows):
            rows = slice(None)
        uvw, field_id = block["UVW"][rows], block["FIELD_ID"][rows]
        model[rows] = predicted_model(uvw, field_id, int(ddid), model_view)
        partials, coherence = spw_chunk_partials(
            block["DATA"][rows], model[rows], block["FLAG"][rows], block["WEIGHT"][rows],
            block["ANTENNA1"][rows], block["ANTENNA2"][rows], field_id, uvw, int(ddid), view,
            wanted, unit_weights,
        )  # fmt: skip
        spw = int(view.ddid_spw[int(ddid)])
        if spw in sums:
            sums[spw][0] += partials
            if coherence is not None:
                sums[spw][1] = coherence if sums[spw][1] is None else sums[spw][1] + coherence
        else:
            sums[spw] = [partials, coherence]
    return model
