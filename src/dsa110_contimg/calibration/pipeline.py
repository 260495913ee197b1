"""Plan, run and summarise a calibration (or apply-only) run on a Dask cluster."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.graph import add_calibration_graph
from dsa110_contimg.calibration.plan import CalibrationPlan, plan_observation
from dsa110_contimg.calibration.steps import FAILED, OK, SKIPPED, product_input
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import caltables
from dsa110_contimg.ms.antennas import antenna_names, array_of, resolve_refant
from dsa110_contimg.ms.reads import (
    chan_freq_hz,
    main_columns,
    read_subtable,
    require_ms,
    require_parallel_hands,
    weights_meaningful,
)
from dsa110_contimg.qa.scores import DEFAULT_THRESHOLDS as DEFAULT_QA_THRESHOLDS
from dsa110_contimg.selection import parse_index_selection

log = logging.getLogger(__name__)

SUMMARY_SCHEMA = "dsa110_contimg.calibration_run"
SUMMARY_VERSION = 1


def _spws(ms, selection: str | None) -> tuple[list[int], int]:
    n_spw = len(chan_freq_hz(ms))
    if not selection:
        return list(range(n_spw)), n_spw
    return parse_index_selection(selection, "SPW", n_spw), n_spw


def _n_fields(ms) -> int:
    return len(read_subtable(ms, "FIELD", columns=["NAME"]).NAME)


def _fields(ms, selection: str | None) -> list[int]:
    if not selection:
        return []
    return parse_index_selection(selection, "field", _n_fields(ms))


def _checked_input(ms, spw_selection) -> tuple[list[int], int]:
    """An MS with DATA and the SPWs selected in it (and how many it has)."""
    require_ms(ms)
    if "DATA" not in main_columns(ms):
        raise ContimgError(f"{ms} has no DATA column: nothing to calibrate")
    require_parallel_hands(ms, "calibration")
    return _spws(ms, spw_selection)


def plan_calibration(
    ms_list,
    calibrator,
    cal_fields: dict,
    refant: str,
    config: CalibrationConfig,
    output_dir,
    spw_selection: str | None = None,
    targets=(),
) -> CalibrationPlan:
    """Check every input and decide every path before anything runs.

    ``cal_fields`` maps each calibrator MS to the field ids to solve on.
    Targets take the solutions of the first calibrator MS.
    """
    from dsa110_contimg.phasing.check import DEFAULT_THRESHOLDS
    from dsa110_contimg.phasing.geometry import field_geometry

    observations = []
    for ms in ms_list:
        spws, n_spw = _checked_input(ms, spw_selection)
        fields = list(cal_fields[ms])
        geometry = field_geometry(ms, calibrator)
        needs_shift = any(
            geometry[f].separation_arcmin >= DEFAULT_THRESHOLDS.phased_arcmin for f in fields
        )
        phasecenter = None
        if config.phasing.rephase and needs_shift:
            phasecenter = f"J2000 {calibrator.ra_deg}deg {calibrator.dec_deg}deg"
        elif not config.phasing.rephase:
            log.warning(
                "rephasing is switched off: %s fields %s stay %.1f arcmin from %s",
                ms,
                fields,
                max(geometry[f].separation_arcmin for f in fields),
                calibrator.name,
            )
        observations.append(
            plan_observation(
                ms,
                "calibrator",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                cal_fields=fields,
                phasecenter=phasecenter,
                refant=resolve_refant(ms, refant),
                antennas_with_data=array_of(ms).with_data,
            )
        )
    for ms in targets:
        spws, n_spw = _checked_input(ms, spw_selection)
        _check_same_setup(ms, ms_list[0])
        observations.append(
            plan_observation(
                ms,
                "target",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                solutions_from=observations[0].ms,
            )
        )
    _refuse_duplicate_outputs(observations)
    return CalibrationPlan(calibrator.name, tuple(observations), config, str(Path(output_dir)))


def _check_same_setup(ms, reference) -> None:
    if len(antenna_names(ms)) != len(antenna_names(reference)) or [
        len(f) for f in chan_freq_hz(ms)
    ] != [len(f) for f in chan_freq_hz(reference)]:
        raise ContimgError(
            f"{ms} has another array or spectral setup than {reference}: its solutions do not apply"
        )


def _refuse_duplicate_outputs(observations) -> None:
    """Two inputs never share products, in one run or across runs into one directory."""
    seen = {}
    for obs in observations:
        if obs.output_mms in seen:
            raise ContimgError(
                f"{obs.ms} and {seen[obs.output_mms]} would both write {obs.output_mms}: "
                "rename one or use separate --out directories"
            )
        seen[obs.output_mms] = obs.ms
        made_from = product_input(obs.output_mms)
        if made_from is not None and made_from != obs.ms:
            raise ContimgError(
                f"{obs.output_mms} holds the calibration of {made_from}; {obs.ms} has the same "
                "name and would replace it: use another --out (or remove the old products)"
            )


def plan_apply(
    ms_list, tables, config: CalibrationConfig, output_dir, fields=None, spw_selection=None
) -> CalibrationPlan:
    """Apply existing caltables to each MS (a calibrated copy per MS, DATA untouched)."""
    if not tables:
        raise ContimgError("give the caltables to apply with --tables")
    observations = []
    for ms in ms_list:
        spws, n_spw = _checked_input(ms, spw_selection)
        n_ant = len(antenna_names(ms))
        freqs = chan_freq_hz(ms)
        for table in tables:
            info = caltables.caltable_info(table)
            caltables.check_caltable_matches(info, n_ant, n_spw, spws)
            chanbin = config.fast.chanbin if config.fast.enabled else 1
            caltables.check_bandpass_channels(info, freqs, spws, chanbin)
        observations.append(
            plan_observation(
                ms,
                "target",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                apply_fields=_fields(ms, fields),
                given_tables=[str(Path(t).absolute()) for t in tables],
            )
        )
    _refuse_duplicate_outputs(observations)
    return CalibrationPlan(None, tuple(observations), config, str(Path(output_dir)))


def run_plan(
    plan: CalibrationPlan,
    client,
    log_dir,
    calibrator=None,
    progress: bool | None = None,
    performance_report: str | None = None,
) -> dict:
    """Run every task of the plan on ``client``; write and return the run summary."""
    log_dir = Path(log_dir).absolute()
    (log_dir / "casa").mkdir(parents=True, exist_ok=True)
    with claimed_outputs(plan.observations):
        return _run_locked_plan(plan, client, log_dir, calibrator, progress, performance_report)


@contextlib.contextmanager
def claimed_outputs(observations):
    """Hold every observation's output lock and clear what a killed run left behind."""
    with contextlib.ExitStack() as locks:
        for obs in observations:
            Path(obs.work_dir).parent.mkdir(parents=True, exist_ok=True)
            locks.enter_context(_sole_writer(obs))
            _remove_leftovers_of_killed_runs(obs)
        yield


def _run_locked_plan(plan, client, log_dir, calibrator, progress, performance_report) -> dict:
    from distributed import performance_report as dask_performance_report
    from distributed import progress as dask_progress

    graph = add_calibration_graph(plan, calibrator, str(log_dir))
    started = time.perf_counter()
    report = (
        dask_performance_report(filename=str(performance_report))
        if performance_report
        else contextlib.nullcontext()
    )
    with report:
        futures = {stem: client.compute(v["outcomes"]) for stem, v in graph.items()}
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            dask_progress([f for fs in futures.values() for f in fs])
        results = {stem: client.gather(fs) for stem, fs in futures.items()}
    wall = time.perf_counter() - started
    summary = summarise(plan, results, wall)
    path = log_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    summary["summary_path"] = str(path)
    return summary


@contextlib.contextmanager
def _sole_writer(obs):
    """Hold an exclusive lock on the observation's outputs for the whole run.

    A second run writing the same products at once is refused; the lock
    dies with its process, so a killed run never blocks the next one. The
    lock file is removed when the run ends (a killed run's is reused).
    """
    import fcntl
    import os

    lock_path = Path(obs.work_dir).with_name(f".{obs.stem}.cal.lock")
    while True:
        lock = open(lock_path, "a")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ContimgError(
                f"another calibration of {obs.stem} is writing to {lock_path.parent}; "
                "wait for it or choose another --out"
            ) from None
        # The previous holder may have removed the file between our open and lock.
        if lock_path.exists() and os.stat(lock_path).st_ino == os.fstat(lock.fileno()).st_ino:
            break
        lock.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        lock.close()


def _remove_leftovers_of_killed_runs(obs) -> None:
    """The work directory and hidden ``.<name>.partial-<pid>`` products of a killed run."""
    import shutil

    shutil.rmtree(obs.work_dir, ignore_errors=True)
    out = Path(obs.output_mms).parent
    for folder in (out, out / f"{obs.stem}.caltables"):
        for partial in folder.glob(f".{obs.stem}*.partial-*"):
            shutil.rmtree(partial, ignore_errors=True)


def summarise(plan: CalibrationPlan, results: dict, wall_seconds: float) -> dict:
    observations = []
    for obs in plan.observations:
        outcomes = results[obs.stem]
        timings = defaultdict(float)
        for o in outcomes:
            timings[o.step] += o.seconds
        published = next((o for o in outcomes if o.step == "publish"), None)
        merged = (
            {}
            if not published.ok
            else {
                o.step.removeprefix("merge-"): obs.published(o.detail["table"])
                for o in outcomes
                if o.step.startswith("merge-") and o.ok
            }
        )
        solutions = {
            f"{o.step}/spw{o.spw}" if o.spw >= 0 else f"{o.step}/allspw": {
                k: obs.published(v) if k == "table" else v
                for k, v in o.detail.items()
                if k != "casa_seconds"
            }
            for o in outcomes
            if o.ok and "table" in o.detail and not o.step.startswith("merge-")
        }
        model = {f"spw{o.spw}": o.detail for o in outcomes if o.step == "model" and o.ok}
        failed = [_brief(o) for o in outcomes if o.status == FAILED]
        skipped = [_brief(o) for o in outcomes if o.status == SKIPPED]
        degraded = [] if failed else _degraded_reasons(obs, plan.config, solutions, skipped)
        observations.append(
            {
                "ms": obs.ms,
                "role": obs.role,
                "output_mms": published.detail["output_mms"] if published.ok else None,
                "calibrated_spws": published.detail.get("calibrated_spws", []),
                "merged_tables": merged,
                "given_tables": list(obs.given_tables),
                "solutions": solutions,
                "phasing": model,
                "outcome": FAILED if failed else DEGRADED if degraded else OK,
                "degraded": degraded,
                "failed": failed,
                "skipped": skipped,
                "step_seconds": dict(timings),
                "task_seconds": round(sum(o.seconds for o in outcomes), 3),
                "task_cpu_seconds": round(sum(o.cpu_seconds for o in outcomes), 3),
                "peak_worker_rss_gb": round(max((o.peak_rss_gb for o in outcomes), default=0), 3),
                "steps": [
                    {
                        "step": o.step,
                        "spw": o.spw,
                        "status": o.status,
                        "seconds": round(o.seconds, 3),
                        "attempts": o.attempts,
                        "error": o.error,
                    }
                    for o in outcomes
                ],
            }
        )
    outcomes = {o["outcome"] for o in observations}
    return {
        "schema": SUMMARY_SCHEMA,
        "version": SUMMARY_VERSION,
        "status": FAILED if FAILED in outcomes else DEGRADED if DEGRADED in outcomes else OK,
        "calibrator": plan.calibrator,
        "output_dir": plan.output_dir,
        "wall_seconds": wall_seconds,
        "config": plan.config.to_dict(),
        "observations": observations,
    }


DEGRADED = "degraded"
# Solutions kept below this fraction make a run degraded (the QA warning limit
# of the flagged fraction of solutions).
KEPT_WARNING = 1.0 - DEFAULT_QA_THRESHOLDS["caltable_flagged_fraction"].warning


def _degraded_reasons(obs, config: CalibrationConfig, solutions: dict, skipped) -> list[str]:
    """Why a run that failed nowhere still lost data: solutions lost, SPWs skipped.

    Each reason names the table, the antennas lost and the likely cause
    (median SNR of the flagged solutions against minsnr) and what to try.
    """
    reasons = []
    names = array_of(obs.ms).names if solutions else ()
    for key, stats in solutions.items():
        kept = stats.get("kept_fraction")
        if kept is None or kept >= KEPT_WARNING:
            continue
        step = key.split("/")[0]
        minsnr = _minsnr_of(step, config)
        lost = [names[a] if a < len(names) else str(a) for a in stats.get("lost_antennas", [])]
        cause = (
            f"; the flagged solutions' median SNR {stats['flagged_snr_median']:.1f} is below "
            f"minsnr {minsnr:g}: try a longer solution interval, --combine-spw or a lower minsnr"
            if "flagged_snr_median" in stats and minsnr and stats["flagged_snr_median"] < minsnr
            else "; too few unflagged baselines per antenna (minblperant) or flagged data"
        )
        reasons.append(
            f"{key}: kept {kept:.0%} of solutions"
            + (f", lost {len(lost)} antenna(s) ({', '.join(lost[:12])}"
               + (", ..." if len(lost) > 12 else "") + ")" if lost else "")
            + cause
        )  # fmt: skip
    for item in skipped:
        if item["error"] == "SPW fully flagged":
            reasons.append(f"spw {item['spw']} skipped: fully flagged")
    return reasons


def _minsnr_of(step: str, config: CalibrationConfig) -> float | None:
    section = {"prebp": config.prebp, "kcal": config.delay, "bpcal": config.bandpass}.get(step)
    return (section or config.gains).minsnr


def _brief(outcome) -> dict:
    return {"step": outcome.step, "spw": outcome.spw, "error": outcome.error}


def format_summary(summary: dict) -> str:
    lines = []
    for obs in summary["observations"]:
        lines.append(f"{obs['role']} {obs['ms']}")
        lines.append(f"  calibrated MS: {obs['output_mms'] or 'none (see failures)'}")
        lines.append(f"  calibrated SPWs: {obs['calibrated_spws']}")
        verdicts: dict[str, int] = {}
        for spw in obs["phasing"].values():
            for verdict, count in spw["verdicts"].items():
                verdicts[verdict] = verdicts.get(verdict, 0) + count
        if verdicts:
            lines.append(
                "  model check on the solve fields (field x SPW): "
                + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
            )
            if set(verdicts) - {"excellent", "phased", "degraded", "uncalibrated"}:
                lines.append(
                    "  WARNING: DATA and MODEL_DATA disagree on some fields; solutions there "
                    "will be poor (is the data rephased? is the model current?)"
                )
        for step, table in obs["merged_tables"].items():
            lines.append(f"  {step}: {table}")
        for key, stats in obs["solutions"].items():
            if "kept_fraction" in stats:
                lines.append(
                    f"  {key:14s} kept {100 * stats['kept_fraction']:5.1f} %"
                    + (f"  SNR median {stats['snr_median']:.1f}" if "snr_median" in stats else "")
                )
        for item in obs["failed"]:
            lines.append(f"  FAILED {item['step']} spw {item['spw']}: {item['error']}")
        for reason in obs.get("degraded", []):
            lines.append(f"  DEGRADED {reason}")
        for item in obs["skipped"]:
            if item["error"] == "SPW fully flagged":
                lines.append(f"  skipped spw {item['spw']}: fully flagged")
        slowest = sorted(obs["step_seconds"].items(), key=lambda kv: -kv[1])[:6]
        lines.append("  task seconds: " + ", ".join(f"{step} {sec:.1f}" for step, sec in slowest))
    lines.append(f"wall time {summary['wall_seconds']:.1f} s; status {summary['status']}")
    return "\n".join(lines)
