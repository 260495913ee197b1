"""The recipe's steps for one (MS, SPW) piece: what each Dask task runs.

Every step takes the outcomes it depends on and returns a
:class:`~dsa110_contimg.calibration.outcomes.StepOutcome` (see
:func:`~dsa110_contimg.calibration.outcomes.run_step` for skips, retries and
failures). Every step is safe to run again: products are replaced by rename,
flags and applies rewrite the same values.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import dask
import numpy as np

from dsa110_contimg import casa_env
from dsa110_contimg.calibration import native_flag, native_prepare
from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.outcomes import FAILED, SKIPPED, StepOutcome, run_step
from dsa110_contimg.calibration.plan import ObservationPlan, SpwPiece, applied_steps
from dsa110_contimg.calibration.recipe import (
    applied_tables,
    selection_string,
)
from dsa110_contimg.casa import tasks
from dsa110_contimg.errors import StepFailed
from dsa110_contimg.ms import caltables, mms, reads
from dsa110_contimg.ms.publish import product_input, publish_directory, write_provenance
from dsa110_contimg.ms.writes import flag_all_rows
from dsa110_contimg.qa import graph as qa_graph

log = logging.getLogger(__name__)


def casa_log(log_dir, obs: ObservationPlan, spw, step) -> str:
    label = "allspw" if spw < 0 else f"spw{spw:02d}"
    return str(Path(log_dir) / "casa" / f"{obs.stem}-{label}-{step}.log")


def staging_path(piece: SpwPiece, obs: ObservationPlan) -> Path:
    return Path(obs.work_dir) / "staging" / Path(piece.sub_ms).name


def work_mms(obs: ObservationPlan) -> Path:
    return Path(obs.work_dir) / Path(obs.output_mms).name


def prepare(obs: ObservationPlan, piece: SpwPiece, config: CalibrationConfig, log_dir,
            calibrator=None):  # fmt: skip
    """Copy this SPW of the input MS into its own sub-MS, rephasing the calibrator fields.

    The native engine flags autocorrelations and zeros on the way and, given the
    ``calibrator`` of a calibrator MS, writes its MODEL_DATA and sums the phase-centre
    check (:mod:`~dsa110_contimg.calibration.native_prepare`): the flag and model steps
    then only report.
    """

    def body():
        if work_mms(obs).exists():
            # Dask reruns a finished task whose result died with its worker: once the
            # Multi-MS is assembled (and later steps have written into it), the staged
            # copy is not needed again.
            return {"task": "already assembled", "casa_seconds": 0.0}
        staged = staging_path(piece, obs)
        staged.parent.mkdir(parents=True, exist_ok=True)
        log_file = casa_log(log_dir, obs, piece.spw, "prepare")
        fields = selection_string(obs.apply_fields)
        if (
            obs.phasecenter
            and config.engine == "native"
            and reads.fixed_j2000_phase_centres(obs.ms)
        ):
            modes = config.flagging.modes()
            in_copy = set(modes) <= native_flag.NATIVE_MODES
            model = None
            if in_copy and calibrator is not None and config.phasing.write_model:
                model = native_prepare.ModelInCopy(
                    calibrator, tuple(obs.cal_fields), config.phasing.primary_beam,
                    config.phasing.model_position == "phase-centre", obs.equal_weights,
                )  # fmt: skip
            detail = native_prepare.prepare_spw(
                obs.ms, str(staged), obs.cal_fields, *obs.phasecenter_rad, spw=piece.spw,
                field=fields, flag_modes=modes if in_copy else (), model=model,
            )  # fmt: skip
        elif obs.phasecenter:
            call = tasks.run_phaseshift(obs.ms, str(staged), {f: obs.phasecenter for f in
                                        obs.cal_fields}, spw=str(piece.spw), field=fields,
                                        log_file=log_file)  # fmt: skip
            detail = {"task": call.task, "casa_seconds": call.seconds}
        else:
            call = tasks.run_split(
                obs.ms, str(staged), spw=str(piece.spw), field=fields, log_file=log_file
            )
            detail = {"task": call.task, "casa_seconds": call.seconds}
        if obs.equal_weights:
            # CASA solves drop visibilities of non-positive weight: with none
            # meaningful, the working copy weights every visibility equally.
            tasks.run_initweights_ones(str(staged), log_file)
            log.warning("%s has no positive WEIGHT: the working copy weights data equally", obs.ms)
            detail["weights_reset"] = True
        return detail

    return run_step("prepare", obs, piece.spw, [], body, config.retries)


def assemble(obs: ObservationPlan, prepared, config: CalibrationConfig):
    """Gather the prepared sub-MSs into one Multi-MS (in the work directory)."""
    ready = [o for o in prepared if o.ok]
    if not ready:
        return StepOutcome(obs.ms, -1, "assemble", FAILED, error="no SPW could be prepared")

    def body():
        target = work_mms(obs)
        if target.exists():
            # Published whole by rename, so complete; a rerun (its result died with a
            # worker) must not replace it: later steps have written flags, models and
            # corrections into it.
            return {"spws": [o.spw for o in ready], "mms": str(target)}
        pieces = [p for p in obs.pieces if p.spw in {o.spw for o in ready}]
        staged = [staging_path(p, obs) for p in pieces]
        missing = [s.name for s in staged if not s.exists()]
        if missing:
            raise RuntimeError(f"prepared sub-MSs missing from the work directory: {missing}")
        # Assembly moves its inputs: give it hard-linked copies, so the staged sub-MSs
        # survive a worker killed mid-assembly and the retry finds them.
        linked_dir = Path(obs.work_dir) / f"linked-{os.getpid()}"
        shutil.rmtree(linked_dir, ignore_errors=True)
        linked = []
        for sub_ms in staged:
            copy = linked_dir / sub_ms.name
            shutil.copytree(sub_ms, copy, copy_function=os.link, symlinks=True)
            linked.append(copy)
        try:
            with publish_directory(target) as partial:
                mms.assemble_mms(linked, partial)
        finally:
            shutil.rmtree(linked_dir, ignore_errors=True)
        return {"spws": [o.spw for o in ready], "mms": str(target)}

    return run_step("assemble", obs, -1, [], body, config.retries)


def flag(obs: ObservationPlan, piece: SpwPiece, config, log_dir, prepared, assembled):
    """Flag autocorrelations and zeros (and RFI when asked); skip a fully flagged SPW."""

    def body():
        started = time.perf_counter()
        modes = config.flagging.modes()
        if prepared.detail.get("flagged") == sorted(modes):
            detail = {"engine": "native", "modes": sorted(modes), "in_prepare": True}
        elif config.engine == "native" and modes and set(modes) <= native_flag.NATIVE_MODES:
            detail = native_flag.flag_autocorrelations_and_zeros(piece.sub_ms, modes)
        else:
            call = tasks.run_flagdata(
                piece.sub_ms, modes, casa_log(log_dir, obs, piece.spw, "flag")
            )
            detail = {"casa_seconds": call.seconds}
        fields = obs.cal_fields if obs.role == "calibrator" else obs.apply_fields
        detail["unflagged_fraction"] = reads.unflagged_cross_fraction(piece.sub_ms, fields)
        if detail["unflagged_fraction"] == 0.0:
            log.warning("%s SPW %d is fully flagged: skipped", obs.stem, piece.spw)
            seconds = time.perf_counter() - started
            return StepOutcome(
                obs.ms, piece.spw, "flag", SKIPPED, seconds, 1, "SPW fully flagged", detail
            )
        return detail

    return run_step("flag", obs, piece.spw, [prepared, assembled], body, config.retries)


def model(obs: ObservationPlan, piece: SpwPiece, config, calibrator, flagged, prepared):
    """Write the calibrator's MODEL_DATA and check phase centre and model on the solve fields
    (or, where the prepare did both, make the check's report from its sums)."""
    from dsa110_contimg.phasing.check import check_phasing, phasing_report

    def body():
        sums = prepared.detail.get("phasing_sums")
        with casa_env.casa_output_to_log():
            if sums is not None:
                report = phasing_report(piece.sub_ms, calibrator, obs.cal_fields, sums,
                                        "MODEL_DATA")  # fmt: skip
            else:
                report = check_phasing(
                    piece.sub_ms,
                    calibrator,
                    fields=obs.cal_fields,
                    primary_beam=config.phasing.primary_beam,
                    write_model=config.phasing.write_model,
                    at_phase_centre=config.phasing.model_position == "phase-centre",
                )
        if obs.phasecenter and not report.phased_to_calibrator:
            raise StepFailed(
                f"rephasing did not take on {obs.stem} spw {piece.spw}: {report.summary}"
            )
        verdicts = {}
        for f in report.fields:
            verdicts[f.verdict] = verdicts.get(f.verdict, 0) + 1
        return {
            "phased_to_calibrator": report.phased_to_calibrator,
            "verdicts": verdicts,
            "data_model_phase_scatter_deg": float(
                np.median([f.data_model_phase_scatter_deg for f in report.fields])
            ),
            "median_amp_ratio": float(np.median([f.median_amp_ratio for f in report.fields])),
            "stale_model_fields": [f.geometry.field_id for f in report.fields if f.stale_model],
            "checked_in": "model" if sums is None else "prepare",  # which pass summed it
        }

    return run_step("model", obs, piece.spw, [flagged], body, config.retries)


def average(obs: ObservationPlan, piece: SpwPiece, config, log_dir, modelled):
    """Fast mode: the solve fields averaged in time/frequency into their own MS."""

    def body():
        Path(piece.averaged_ms).parent.mkdir(parents=True, exist_ok=True)
        call = tasks.run_average(
            piece.sub_ms,
            piece.averaged_ms,
            config.fast.timebin,
            config.fast.chanbin,
            field=selection_string(obs.cal_fields),
            log_file=casa_log(log_dir, obs, piece.spw, "average"),
        )
        return {"casa_seconds": call.seconds}

    return run_step("average", obs, piece.spw, [modelled], body, config.retries)


def apply(
    obs: ObservationPlan,
    piece: SpwPiece,
    config: CalibrationConfig,
    log_dir,
    tables_by_step: dict,
    upstream,
    calibrator=None,
    qa_path=None,
):
    """Fill CORRECTED_DATA of this SPW's sub-MS.

    The native apply also computes the SPW's QA pass from the chunks it writes and
    keeps it at ``qa_path`` (when given) for the run's report.

    A SPW whose chain did not succeed still gets the columns the others have
    (MODEL_DATA for a calibrator; CORRECTED_DATA a copy of DATA) with every
    row flagged, so the Multi-MS stays uniform and no one mistakes it for
    calibrated data.
    """
    log_file = casa_log(log_dir, obs, piece.spw, "apply")
    steps = list(tables_by_step) if obs.given_tables else applied_steps(config)

    def body():
        parameters = applied_tables(steps, tables_by_step, obs.n_spw_total)
        if config.engine == "native":
            from dsa110_contimg.calibration import native_apply

            tables = native_apply.native_tables(piece.sub_ms, piece.spw, **parameters,
                                                calwt=config.apply.calwt)  # fmt: skip
            if not isinstance(tables, str):
                detail = _native_apply(piece, tables, calibrator, qa_path)
                return {**detail, "tables": parameters["gaintable"]}
            log.info("%s spw %d: applycal applies %s", obs.stem, piece.spw, tables)
        call = tasks.run_applycal(piece.sub_ms, log_file, spw=str(piece.spw),
                                  calwt=[config.apply.calwt] * len(parameters["gaintable"]),
                                  applymode="calflag", **parameters)  # fmt: skip
        return {"casa_seconds": call.seconds, "tables": parameters["gaintable"]}

    outcome = run_step("apply", obs, piece.spw, upstream, body, config.retries)
    if not outcome.ok and Path(piece.sub_ms).exists():
        _fill_uncalibrated(piece.sub_ms, log_file, calibrator, config)
    return outcome


def _native_apply(piece: SpwPiece, tables, calibrator, qa_path) -> dict:
    """The native apply, with the SPW's QA pass in its pass when ``qa_path`` is given; a
    QA that fails there leaves the apply to go on alone (the QA step then reads the MS)."""
    from dsa110_contimg.calibration import native_apply
    from dsa110_contimg.phasing.view import calibrator_view

    if qa_path:
        try:
            view = None if calibrator is None else calibrator_view(piece.sub_ms, calibrator, True)
            qa = qa_graph.QAContext.of(piece.sub_ms, view)
            detail = native_apply.apply_to_corrected(piece.sub_ms, piece.spw, tables, qa)
            return {**detail, **qa_graph.keep_visibility_qa(*detail.pop("qa"), qa_path),
                    "qa_in_apply": True}  # fmt: skip
        except Exception as error:  # noqa: BLE001 - QA never fails the calibration
            log.warning("spw %d: QA in the apply failed (%s); applying alone", piece.spw, error)
    return native_apply.apply_to_corrected(piece.sub_ms, piece.spw, tables)


def visibility_qa(obs: ObservationPlan, piece: SpwPiece, calibrator, log_dir, applied):
    """The QA pass over this SPW's calibrated sub-MS, kept for the run's report (which
    otherwise reads the whole MS again after the run); never fails the calibration.
    Where the apply kept it already, only says so."""

    def body():
        if not applied.ok:
            return {"saved": False, "why": f"apply {applied.status}"}
        if applied.detail.get("qa_in_apply"):
            return {"qa_spws": applied.detail["qa_spws"], "in_apply": True}
        path = qa_graph.spw_visibility_qa_path(log_dir, obs.stem, piece.spw)
        try:
            return qa_graph.save_visibility_qa(piece.sub_ms, calibrator, path)
        except Exception as error:  # noqa: BLE001 - the report reads the MS itself instead
            return {"saved": False, "why": f"{type(error).__name__}: {error}"}

    return run_step("qa", obs, piece.spw, [], body, 0)


def _fill_uncalibrated(sub_ms, log_file, calibrator, config):
    from dsa110_contimg.ms.reads import main_columns
    from dsa110_contimg.phasing.model import add_model_write_graph

    if calibrator is not None and "MODEL_DATA" not in main_columns(sub_ms):
        with casa_env.casa_output_to_log():
            dask.compute(
                add_model_write_graph(sub_ms, calibrator, primary_beam=config.phasing.primary_beam),
                scheduler="synchronous",
            )
    tasks.run_clearcal(sub_ms, log_file)
    flag_all_rows(sub_ms)


def merge(obs: ObservationPlan, config, step: str, target: str, solved):
    """One table for ``step`` holding every SPW that solved: ``<out>/<stem>_<step>``."""
    sources = sorted({o.detail["table"] for o in solved if o.step == step and o.ok})
    if not sources:
        return StepOutcome(obs.ms, -1, f"merge-{step}", SKIPPED, error=f"no {step} table solved")

    def body():
        caltables.merge_caltables(sources, target)
        return {"table": target, "sources": sources}

    return run_step(f"merge-{step}", obs, -1, [], body, config.retries)


def publish(obs: ObservationPlan, config, assembled, finished):
    """Rename every product of this MS into place, the Multi-MS last; remove the work directory.

    ``finished`` holds every other task of this MS (and the targets' applies that
    read its tables), so nothing is still writing or reading the work copies.
    """

    def body():
        calibrated = [o.spw for o in finished if o.ok and o.step == "apply" and o.ms == obs.ms]
        source = work_mms(obs)
        if not source.exists() and product_input(obs.output_mms) == obs.ms:
            # a rerun (the result died with its worker): this run published already
            shutil.rmtree(obs.work_dir, ignore_errors=True)
            return {"output_mms": obs.output_mms, "calibrated_spws": calibrated}
        if not calibrated and config.apply.enabled:
            raise StepFailed(f"no SPW of {obs.stem} was calibrated: nothing published")
        failed_solves = sorted(
            {f"{o.step} spw {o.spw}" for o in finished if o.ms == obs.ms and o.status == FAILED}
        )
        if failed_solves and not config.apply.enabled:
            raise StepFailed(
                f"solve-only run of {obs.stem} failed ({', '.join(failed_solves)}): "
                "no table published"
            )
        products = obs.products_dir
        staged_tables = products / obs.table_dir.name
        if staged_tables.exists():
            with publish_directory(obs.table_dir) as partial:
                staged_tables.rename(partial)
        for _, final in obs.merged_tables:
            staged = Path(obs.staged(final))
            if staged.exists():
                with publish_directory(final) as partial:
                    staged.rename(partial)
        write_provenance(source, obs.ms)
        with publish_directory(obs.output_mms) as partial:
            source.rename(partial)
        shutil.rmtree(obs.work_dir, ignore_errors=True)
        return {
            "output_mms": obs.output_mms,
            "calibrated_spws": calibrated,
        }

    return run_step("publish", obs, -1, [assembled], body, config.retries)
