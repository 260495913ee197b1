"""Rephase the calibrator fields into a new MS, verify, write the model.

The input MS is never changed. An MS whose chosen fields are already phased
to the calibrator (by PHASE_DIR) is not shifted again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import dask

from dsa110_contimg import casa_env
from dsa110_contimg.casa.tasks import run_phaseshift
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.phasing.check import DEFAULT_THRESHOLDS, PhasingReport, check_phasing
from dsa110_contimg.phasing.geometry import field_geometry
from dsa110_contimg.sky.calibrators import Calibrator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RephasePlan:
    ms: str
    output_ms: str
    calibrator: str
    phasecenter: str
    fields: tuple[int, ...]
    already_phased: bool


def plan_rephase(ms, calibrator: Calibrator, fields, output_ms=None, thresholds=DEFAULT_THRESHOLDS):
    """Decide what to shift (plain data, no I/O beyond the FIELD subtable)."""
    geometry = field_geometry(ms, calibrator)
    if not fields:
        raise ContimgError("no calibrator fields chosen: give --field or --auto-fields")
    unknown = sorted(set(fields) - {g.field_id for g in geometry})
    if unknown:
        raise ContimgError(f"field(s) {unknown} not in {ms}; it has fields 0-{len(geometry) - 1}")
    chosen = [geometry[f] for f in fields]
    already = all(g.separation_arcmin < thresholds.phased_arcmin for g in chosen)
    ms_path = Path(ms)
    if output_ms is None:
        output_ms = ms_path.with_name(f"{ms_path.stem}_{calibrator.name.replace('+', 'p')}.ms")
    if Path(output_ms).resolve() == ms_path.resolve() and not already:
        raise ContimgError("the rephased MS must be a new path: the input MS is never changed")
    return RephasePlan(
        ms=str(ms_path),
        output_ms=str(ms if already else output_ms),
        calibrator=calibrator.name,
        phasecenter=f"J2000 {calibrator.ra_deg}deg {calibrator.dec_deg}deg",
        fields=tuple(int(f) for f in fields),
        already_phased=already,
    )


def rephase_and_model(
    plan: RephasePlan,
    calibrator: Calibrator,
    client=None,
    write_model: bool = True,
    primary_beam: bool = True,
    thresholds=DEFAULT_THRESHOLDS,
    log_file=None,
) -> PhasingReport:
    """Run the plan: phaseshift as a Dask task, check PHASE_DIR, write MODEL_DATA, re-check."""
    if plan.already_phased:
        log.info(
            "%s is already phased to %s (PHASE_DIR): not shifted again", plan.ms, plan.calibrator
        )
    else:
        task = dask.delayed(run_phaseshift, pure=False)(
            plan.ms,
            plan.output_ms,
            {f: plan.phasecenter for f in plan.fields},
            field=",".join(str(f) for f in plan.fields),
            log_file=log_file,
        )
        result = (
            client.compute(task).result()
            if client is not None
            else task.compute(scheduler="synchronous")
        )
        log.info(
            "phaseshift of fields %s took %.1f s -> %s", plan.fields, result.seconds, plan.output_ms
        )
        geometry = check_phasing(
            plan.output_ms,
            calibrator,
            fields=plan.fields,
            thresholds=thresholds,
            visibilities=False,
        )
        worst = max(f.geometry.separation_arcmin for f in geometry.fields)
        if worst >= thresholds.phased_arcmin:
            raise ContimgError(
                f"rephasing did not take: a chosen field is still {worst:.3f} arcmin from "
                f"{plan.calibrator} in PHASE_DIR"
            )
    # casacore prints notes about keywords it cannot convert; keep them in the log.
    with casa_env.casa_output_to_log():
        return check_phasing(
            plan.output_ms,
            calibrator,
            fields=plan.fields,
            thresholds=thresholds,
            primary_beam=primary_beam,
            write_model=write_model,
        )
