"""Phase-centre check: geometry from FIELD::PHASE_DIR plus visibility metrics in one pass.

The visibility part reads DATA, MODEL_DATA, FLAG and WEIGHT of every row
through dask-ms; each row chunk yields partial sums (``qa.kernels``) that add
up per (field, SPW), all computed in a single ``dask.compute``. A stale-model
test compares MODEL_DATA with a fresh prediction for the current phase centre
on a few channels of every row.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import reads
from dsa110_contimg.phasing.geometry import FieldGeometry, field_geometry
from dsa110_contimg.phasing.model import model_datasets, model_writes
from dsa110_contimg.phasing.view import (
    add_summed_chunks,
    calibrator_view,
    model_coherence_by_field,
    predicted_model,
)
from dsa110_contimg.qa import kernels
from dsa110_contimg.qa.visibility_kernels import noise_floor_baselines
from dsa110_contimg.sky.calibrators import Calibrator

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PhasingThresholds:
    """Context-aware thresholds from the production notes (degrees, arcmin)."""

    aligned_arcmin: float = 1.0  # source counts as at the phase centre
    phased_arcmin: float = 0.1  # rephasing verified
    excellent_deg: float = 30.0  # aligned source: DATA-MODEL scatter below this is excellent
    misaligned_deg: float = 120.0  # above this DATA and MODEL are misaligned
    stale_coherence: float = 0.98  # MODEL vs fresh prediction below this: stale model


DEFAULT_THRESHOLDS = PhasingThresholds()


@dataclass(frozen=True)
class SpwMetrics:
    spw: int
    model_phase_scatter_deg: float
    data_model_phase_scatter_deg: float
    median_amp_ratio: float
    flagged_fraction: float
    n_used: int
    data_model_phase_floor_deg: float = float("nan")  # what thermal noise alone gives


@dataclass(frozen=True)
class FieldReport:
    geometry: FieldGeometry
    verdict: str
    detail: str
    model_phase_scatter_deg: float
    data_model_phase_scatter_deg: float
    median_amp_ratio: float
    flagged_fraction: float
    model_coherence: float | None
    stale_model: bool
    spws: tuple[SpwMetrics, ...] = field(default_factory=tuple)
    data_model_phase_floor_deg: float = float("nan")  # what thermal noise alone gives


@dataclass(frozen=True)
class PhasingReport:
    ms: str
    calibrator: Calibrator
    model_source: str  # "MODEL_DATA" or "prediction"
    phased_to_calibrator: bool
    summary: str
    fields: tuple[FieldReport, ...]

    def to_json_dict(self) -> dict:
        """The documented ``--json`` schema (version 1); see README."""
        return {
            "schema": "dsa110_contimg.phasing_check",
            "version": SCHEMA_VERSION,
            "ms": self.ms,
            "calibrator": {
                "name": self.calibrator.name,
                "ra_deg": self.calibrator.ra_deg,
                "dec_deg": self.calibrator.dec_deg,
            },
            "model_source": self.model_source,
            "phased_to_calibrator": self.phased_to_calibrator,
            "summary": self.summary,
            "fields": [
                {
                    **dataclasses.asdict(f.geometry),
                    "verdict": f.verdict,
                    "detail": f.detail,
                    "model_phase_scatter_deg": f.model_phase_scatter_deg,
                    "data_model_phase_scatter_deg": f.data_model_phase_scatter_deg,
                    "data_model_phase_floor_deg": f.data_model_phase_floor_deg,
                    "median_amp_ratio": f.median_amp_ratio,
                    "flagged_fraction": f.flagged_fraction,
                    "model_coherence": f.model_coherence,
                    "stale_model": f.stale_model,
                    "spws": [dataclasses.asdict(s) for s in f.spws],
                }
                for f in self.fields
            ],
        }


def spw_chunk_partials(
    data, model, flag, weight, ant1, ant2, field_id, uvw, ddid, view, wanted_fields, unit_weights,
):  # fmt: skip
    """Per-field partial sums of one SPW's row chunk.

    ``model`` is MODEL_DATA, or None to compare with a fresh prediction
    (MODEL_DATA is also tested against one for the stale-model test).
    Returns (partials (field, PARTIALS_LENGTH), coherence (field, chan, 3) or
    None). Fields not in ``wanted_fields`` are read but skipped. The
    prediction holds Stokes I in the parallel hands and 0 in the cross-hands,
    so only parallel hands are compared. ``unit_weights`` weights every
    visibility equally (for an MS whose WEIGHT says nothing).
    """
    field_id = np.asarray(field_id)
    if unit_weights:
        weight = np.ones(np.shape(weight), np.float32)
    keep = wanted_fields[field_id]
    if not keep.all():
        rows = np.flatnonzero(keep)
        data, flag, weight, uvw = data[rows], flag[rows], weight[rows], uvw[rows]
        ant1, ant2, field_id = np.asarray(ant1)[rows], np.asarray(ant2)[rows], field_id[rows]
        model = None if model is None else model[rows]
    coherence = None
    if model is None:
        model = predicted_model(uvw, field_id, ddid, view)
    else:
        coherence = model_coherence_by_field(model, uvw, field_id, ant1, ant2, ddid, view)
    partials = np.zeros((view.n_field, kernels.PARTIALS_LENGTH))
    order = None if np.all(np.diff(field_id) >= 0) else np.argsort(field_id, kind="stable")
    sorted_ids = field_id if order is None else field_id[order]
    # each field's run of rows; none in a chunk holding no wanted field
    starts = np.flatnonzero(np.diff(sorted_ids, prepend=-1) != 0)
    stops = np.append(starts[1:], len(sorted_ids)) if len(starts) else starts
    for start, stop in zip(starts, stops, strict=True):
        rows = slice(start, stop) if order is None else order[start:stop]
        a1, a2 = np.asarray(ant1[rows]), np.asarray(ant2[rows])
        partials[int(sorted_ids[start])] += kernels.phase_alignment_partials(
            data[rows], model[rows], flag[rows], weight[rows], a1 != a2,
            noise_rows=noise_floor_baselines(a1, a2),
        )  # fmt: skip
    return partials, coherence


def add_phase_alignment_graph(ms, calibrator, fields, primary_beam, row_chunk=None,
                              write_model=False, at_phase_centre=False):  # fmt: skip
    """Delayed per-SPW (spw, partials (field, ...), coherence (field, chan, 3) or None),
    where the model came from, and the lazy MODEL_DATA writes (None unless ``write_model``).

    One dataset per SPW; every row of every selected field is read once. With
    ``write_model`` the calibrator's model (``at_phase_centre`` as in
    :func:`~dsa110_contimg.phasing.model.model_datasets`) is predicted, written to
    MODEL_DATA and compared with DATA in the same pass, as if read back.
    """
    wanted = ["DATA", "FLAG", "WEIGHT", "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW"]
    row_chunk = row_chunk or reads.balanced_row_chunk(ms)
    view = calibrator_view(ms, calibrator, primary_beam)
    writes = None
    if write_model:
        xds_list = model_datasets(ms, calibrator, primary_beam, row_chunk, at_phase_centre,
                                  columns=wanted, view=view)  # fmt: skip
        writes, has_model = model_writes(xds_list, ms), True
    else:
        has_model = "MODEL_DATA" in reads.main_columns(ms)
        xds_list = reads.read_visibility_datasets(
            ms, wanted + (["MODEL_DATA"] if has_model else []), row_chunk=row_chunk,
            group_cols=("DATA_DESC_ID",),
        )  # fmt: skip
    wanted_fields = np.ones(view.n_field, bool)
    if fields is not None:
        wanted_fields[:] = False
        wanted_fields[sorted(fields)] = True
    unit_weights = not reads.weights_meaningful(ms)
    columns = ("DATA", "MODEL_DATA", "FLAG", "WEIGHT", "ANTENNA1", "ANTENNA2", "FIELD_ID", "UVW")
    graph = []
    for ds in xds_list:
        ddid = int(ds.attrs["DATA_DESC_ID"])
        summed = add_summed_chunks(
            ds, columns, spw_chunk_partials, ddid, view, wanted_fields, unit_weights
        )
        graph.append((int(view.ddid_spw[ddid]), summed))
    return graph, ("MODEL_DATA" if has_model else "prediction"), writes


def check_phasing(
    ms,
    calibrator: Calibrator,
    fields=None,
    thresholds: PhasingThresholds = DEFAULT_THRESHOLDS,
    primary_beam: bool = True,
    visibilities: bool = True,
    row_chunk=None,
    write_model: bool = False,
    at_phase_centre: bool = False,
) -> PhasingReport:
    """Geometry and (optionally) visibility metrics per field; verdicts per field.

    ``write_model`` writes the calibrator's MODEL_DATA (every field, ``at_phase_centre``
    or at its true position) in the pass that checks it, instead of a pass of its own
    before: the same column and the same report, one read fewer.
    """
    ms = reads.require_ms(ms)
    _check_fields(ms, calibrator, fields)
    spw_results, model_source = [], "none"
    if visibilities or write_model:
        graph, model_source, writes = add_phase_alignment_graph(
            ms, calibrator, None if fields is None else set(fields), primary_beam, row_chunk,
            write_model, at_phase_centre,
        )  # fmt: skip
        ((computed, _),) = reads.compute_reading(([g[1] for g in graph], writes))
        spw_results = [(spw, *sums) for (spw, _), sums in zip(graph, computed, strict=True)]
    return phasing_report(ms, calibrator, fields, spw_results, model_source, thresholds)


def _check_fields(ms, calibrator, fields):
    geometry = field_geometry(ms, calibrator)
    if fields is not None:
        unknown = sorted(set(fields) - {g.field_id for g in geometry})
        if unknown:
            raise ContimgError(
                f"field(s) {unknown} not in {ms}; it has fields 0-{len(geometry) - 1}"
            )
    return geometry


def phasing_report(
    ms, calibrator: Calibrator, fields, spw_results, model_source: str,
    thresholds: PhasingThresholds = DEFAULT_THRESHOLDS,
) -> PhasingReport:  # fmt: skip
    """The report of :func:`check_phasing` from the geometry of ``ms`` and the summed
    partials ``spw_results`` [(spw, partials (field, ...), coherence or None)] of a
    pass over its visibilities (none: geometry only, ``model_source`` "none")."""
    geometry = _check_fields(ms, calibrator, fields)
    selected = [g for g in geometry if fields is None or g.field_id in fields]
    per_field: dict[int, list] = {g.field_id: [] for g in selected}
    for spw, partials, coherence in spw_results:
        for field_id in per_field:
            if partials[field_id, kernels.TOTAL_INDEX] > 0:
                per_field[field_id].append(
                    (spw, partials[field_id], None if coherence is None else coherence[field_id])
                )
    if model_source != "none":
        total_used = sum(int(p[kernels.USED_INDEX]) for v in per_field.values() for _, p, _ in v)
        if total_used == 0:
            raise ContimgError(
                f"{ms}: no usable visibilities in the selection (all flagged, zero or NaN)"
            )

    units = reads.data_units(ms)
    reports = [_field_report(g, per_field[g.field_id], thresholds, units) for g in selected]
    nearest = min(selected, key=lambda g: g.separation_arcmin)
    phased = nearest.separation_arcmin < thresholds.phased_arcmin
    if phased:
        summary = (
            f"phased to {calibrator.name}: field {nearest.field_id} phase centre is "
            f"{nearest.separation_arcmin:.3f} arcmin from it (PHASE_DIR)"
        )
    else:
        summary = (
            f"NOT phased to {calibrator.name}: the nearest phase centre (field "
            f"{nearest.field_id}, {nearest.name}) is {nearest.separation_arcmin:.1f} arcmin away "
            "(PHASE_DIR); rephase the calibrator fields before solving"
        )
    return PhasingReport(
        ms=str(ms),
        calibrator=calibrator,
        model_source=model_source,
        phased_to_calibrator=phased,
        summary=summary,
        fields=tuple(reports),
    )


def _field_report(geometry: FieldGeometry, spw_results, thresholds, units: str) -> FieldReport:
    spws = []
    for spw, partials, _ in sorted(spw_results, key=lambda r: r[0]):
        spws.append(SpwMetrics(spw=spw, **kernels.finalise_phase_alignment(partials)))
    if spw_results:
        combined = kernels.finalise_phase_alignment(sum(r[1] for r in spw_results))
        coherences = [r[2] for r in spw_results if r[2] is not None]
        coherence = kernels.finalise_model_coherence(sum(coherences)) if coherences else None
    else:
        combined = dict.fromkeys(
            ("model_phase_scatter_deg", "data_model_phase_scatter_deg", "median_amp_ratio",
             "flagged_fraction", "data_model_phase_floor_deg"), float("nan"),
        )  # fmt: skip
        coherence = None
    stale = coherence is not None and coherence < thresholds.stale_coherence
    measured = combined["data_model_phase_scatter_deg"]
    floor = combined["data_model_phase_floor_deg"]
    # Judged by the excess over thermal noise: a noise-limited calibrator
    # (S/N near 2.6 per visibility on DSA-110) scatters by tens of degrees.
    verdict, detail = _verdict(geometry, kernels.excess_scatter_deg(measured, floor), thresholds)
    if np.isfinite(floor) and np.isfinite(measured):
        detail += f" (measured {measured:.0f} deg, thermal noise alone {floor:.0f} deg)"
    if units and units.lower() != "jy" and verdict in ("misaligned", "degraded"):
        # Uncalibrated DATA carry the instrument's phases: scatter against the
        # model says nothing about the phasing until they are calibrated.
        verdict = "uncalibrated"
        detail = (
            f"DATA in {units!r} units: DATA-MODEL phase scatter "
            f"{combined['data_model_phase_scatter_deg']:.0f} deg is the instrument's phases, "
            f"not a misalignment; the calibrator is {geometry.separation_arcmin:.2f} arcmin "
            "from the phase centre"
        )
    if stale:
        verdict = "stale model"
        detail += (
            f"; MODEL_DATA does not match a fresh prediction for the current phase centre "
            f"(coherence {coherence:.2f} < {thresholds.stale_coherence}): stale model, rewrite it"
        )
    return FieldReport(
        geometry=geometry,
        verdict=verdict,
        detail=detail,
        model_phase_scatter_deg=combined["model_phase_scatter_deg"],
        data_model_phase_scatter_deg=combined["data_model_phase_scatter_deg"],
        median_amp_ratio=combined["median_amp_ratio"],
        flagged_fraction=combined["flagged_fraction"],
        model_coherence=coherence,
        stale_model=stale,
        spws=tuple(spws),
        data_model_phase_floor_deg=floor,
    )


def _verdict(geometry: FieldGeometry, scatter_deg: float, t: PhasingThresholds):
    """(verdict, detail) using the notes' context-aware table."""
    sep = geometry.separation_arcmin
    aligned = sep < t.aligned_arcmin
    where = "at the phase centre" if aligned else f"{sep:.1f} arcmin from the phase centre"
    if np.isnan(scatter_deg):
        return ("phased" if aligned else "not phased"), f"calibrator {where}; no visibility metrics"
    if scatter_deg > t.misaligned_deg:
        return "misaligned", (
            f"DATA-MODEL phase scatter {scatter_deg:.0f} deg > {t.misaligned_deg:.0f} deg: "
            f"DATA and MODEL misaligned (calibrator {where}); investigate"
        )
    if aligned and scatter_deg < t.excellent_deg:
        return "excellent", (
            f"calibrator {where}; DATA-MODEL phase scatter {scatter_deg:.0f} deg "
            f"< {t.excellent_deg:.0f} deg"
        )
    if aligned:
        return "degraded", (
            f"calibrator {where} but DATA-MODEL phase scatter {scatter_deg:.0f} deg is between "
            f"{t.excellent_deg:.0f} and {t.misaligned_deg:.0f} deg (uncalibrated gains?)"
        )
    return "not phased", (
        f"calibrator {where}; DATA-MODEL phase scatter {scatter_deg:.0f} deg <= "
        f"{t.misaligned_deg:.0f} deg is expected for an offset source, but the field is not "
        "phased to the calibrator"
    )


def format_report(report: PhasingReport) -> str:
    lines = [
        f"Phase-centre check of {report.ms} against {report.calibrator.name} "
        f"(RA {report.calibrator.ra_deg:.5f}, Dec {report.calibrator.dec_deg:.5f} deg); "
        f"model: {report.model_source}",
        " fld name                  PHASE_DIR RA,Dec (deg)   sep(')  sep/FWHM   PB    "
        "model(deg) D-M(deg) |D|/|M|  flag   verdict",
    ]
    for f in report.fields:
        g = f.geometry
        lines.append(
            f" {g.field_id:3d} {g.name[:20]:20s} "
            f"{g.phase_dir_deg[0]:10.5f},{g.phase_dir_deg[1]:9.5f}"
            f"  {g.separation_arcmin:7.2f}  {g.separation_over_fwhm:7.3f}  {g.pb_response:5.3f}"
            f"  {f.model_phase_scatter_deg:8.1f}  {f.data_model_phase_scatter_deg:7.1f}"
            f"  {f.median_amp_ratio:7.3f}  {f.flagged_fraction:5.1%}  {f.verdict}"
            + ("  STALE MODEL" if f.stale_model else "")
        )
    lines.append(report.summary)
    stale = [f.geometry.field_id for f in report.fields if f.stale_model]
    if stale:
        lines.append(
            f"WARNING: stale MODEL_DATA in fields {stale}: rewrite the model after rephasing"
        )
    return "\n".join(lines)
