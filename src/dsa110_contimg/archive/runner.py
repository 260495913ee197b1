"""Reprocess an archive: every calibrator solved, every target calibrated, all QA'd, one graph.

The archive plan is data first: discover the MS, give each a role (a catalog
calibrator transits it, or not), pair every target with the calibrator file
nearest in time within the validity window, and skip what the manifest says
is done with unchanged inputs. Each calibrator then becomes a calibration
plan with its targets (their applies depend on its solves); a calibrator done
earlier lends its recorded tables to an apply plan for its new targets. All
plans' graphs, plus a finishing task per MS (summary and QA report), are
submitted together, so solves, applies and QA of different files overlap on
the cluster; the manifest is updated as each MS finishes.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dask

from dsa110_contimg.archive import discover
from dsa110_contimg.archive.manifest import (
    DONE,
    FAILED,
    INTERRUPTED,
    STATES,
    Manifest,
    shown_state,
)
from dsa110_contimg.calibration.graph import add_calibration_graph
from dsa110_contimg.calibration.pipeline import claimed_outputs, plan_apply, plan_calibration
from dsa110_contimg.calibration.plan import applied_steps
from dsa110_contimg.calibration.summary import summarise
from dsa110_contimg.errors import ContimgError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchivePlan:
    calibrations: tuple  # CalibrationPlan per calibrator file to solve (with its targets)
    applies: tuple  # CalibrationPlan per earlier-solved calibrator lending its tables
    skipped: tuple[str, ...]  # done and unchanged
    failed: tuple[tuple[str, str], ...]  # (path, reason) known before anything runs
    roles: dict = field(default_factory=dict)  # path -> (role, fingerprint, solutions_from)

    @property
    def plans(self) -> tuple:
        return self.calibrations + self.applies


def _unchanged_and_done(manifest: Manifest, entry) -> bool:
    record = manifest.get(entry.path)
    return (
        record is not None
        and record["state"] == DONE
        and record["fingerprint"] == entry.fingerprint
        and all(Path(p).exists() for p in record["outputs"])
    )


def plan_archive(inputs, out_dir, manifest: Manifest, config, refant: str, catalog,
                 validity_hours: float, min_response: float = 0.3) -> ArchivePlan:  # fmt: skip
    """Discover, classify and pair the inputs; decide what runs (no processing yet)."""
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields

    by_name = {c.name: c for c in catalog}
    entries, failed = [], []
    for path in discover.expand_inputs(inputs):
        try:
            entries.append(discover.describe(path, catalog, min_response))
        except ContimgError as error:
            failed.append((str(path), str(error)))
    stems = {}
    for entry in entries:
        stem = Path(entry.path).name.removesuffix(".ms")
        if stem in stems:
            raise ContimgError(
                f"{entry.path} and {stems[stem]} share the name {stem}: their products would "
                "collide in one output directory; reprocess them into different --out"
            )
        stems[stem] = entry.path
    calibrators = [e for e in entries if e.role == "calibrator"]
    validity_s = validity_hours * 3600.0
    targets_of: dict[str, list] = {c.path: [] for c in calibrators}
    roles = {}
    for entry in entries:
        if entry.role == "calibrator":
            roles[entry.path] = ("calibrator", entry.fingerprint, None)
            continue
        nearest = discover.nearest_calibrator(entry, calibrators, validity_s)
        if nearest is None:
            roles[entry.path] = ("target", entry.fingerprint, None)
            failed.append((entry.path, f"no calibrator file within {validity_hours:g} h"))
            continue
        roles[entry.path] = ("target", entry.fingerprint, nearest.path)
        targets_of[nearest.path].append(entry)

    done = {e.path for e in entries if _unchanged_and_done(manifest, e)}
    fingerprints = {e.path: e.fingerprint for e in entries}

    def solutions_current(target) -> bool:
        """The target's calibrator is the same file, with the input its tables came from."""
        calibrator = roles[target][2]
        used = manifest.get(target)["solutions_from"]
        record = manifest.get(calibrator) if calibrator else None
        return (
            calibrator is not None
            and used == calibrator
            and record is not None
            and record["fingerprint"] == fingerprints[calibrator]
        )

    skipped = tuple(
        e.path for e in entries
        if e.path in done and (e.role == "calibrator" or solutions_current(e.path))
    )  # fmt: skip
    calibrations, applies = [], []
    for cal in calibrators:
        targets = [t.path for t in targets_of[cal.path] if t.path not in skipped]
        calibrator = by_name[cal.calibrator]
        if cal.path not in skipped:
            fields = choose_fields(
                cal.path, calibrator, FieldChoice(auto=True, min_response=min_response)
            )
            calibrations.append(plan_calibration(
                [cal.path], calibrator, {cal.path: fields}, refant, config, out_dir,
                targets=targets,
            ))  # fmt: skip
        elif targets:
            tables = manifest.get(cal.path)["caltables"]
            applies.append(plan_apply(targets, tables, config, out_dir))
    return ArchivePlan(tuple(calibrations), tuple(applies), skipped, tuple(failed), roles)


def _applied_tables(plan, obs) -> list[str]:
    """The tables that made ``obs``'s CORRECTED_DATA, in apply order."""
    if obs.given_tables:
        return list(obs.given_tables)
    source = obs
    if obs.role != "calibrator":
        source = next(o for o in plan.observations if o.ms == obs.solutions_from)
    return [source.merged(step) for step in applied_steps(plan.config)]


def _finish(outcomes, plan, obs, calibrator, run_dir, truth) -> dict:
    """Summary and QA report of one MS, in a worker once its last task is done."""
    from dsa110_contimg.qa.runner import qa_report

    started = time.perf_counter()
    one = dataclasses.replace(plan, observations=(obs,))
    (summary,) = summarise(one, {obs.stem: outcomes}, 0.0).observations
    result = {
        "ms": obs.ms,
        "status": "ok" if summary.output_mms and not summary.failed else "failed",
        "output_mms": summary.output_mms,
        "applied_tables": _applied_tables(plan, obs),
        "task_seconds": summary.task_seconds,
        "error": "; ".join(f"{f['step']} spw {f['spw']}: {f['error']}" for f in summary.failed)
        or None,
        "qa_score": None,
        "qa_verdict": None,
    }  # fmt: skip
    if result["output_mms"]:
        tables = summary.tables
        try:
            with dask.config.set(scheduler="synchronous"):
                report = qa_report(result["output_mms"], Path(run_dir) / "qa" / obs.stem, tables,
                                   calibrator, truth=truth)  # fmt: skip
            result["qa_score"] = report["summary"]["overall_score"]
            result["qa_verdict"] = report["summary"]["overall_verdict"]
            result["qa_report"] = report["report_html"]
        except Exception as error:  # noqa: BLE001 - QA must not fail the calibration
            result["qa_error"] = f"{type(error).__name__}: {error}"
    result["task_seconds"] += time.perf_counter() - started
    return result


def run_archive(archive: ArchivePlan, client, manifest: Manifest, run_dir, catalog,
                progress: bool | None = None) -> dict:  # fmt: skip
    """Run every plan's graph on ``client``; update the manifest as each MS finishes."""
    from distributed import as_completed

    from dsa110_contimg.qa.runner import default_truth

    by_name = {c.name: c for c in catalog}
    for path, (role, fingerprint, solutions_from) in archive.roles.items():
        if path not in archive.skipped:
            manifest.register(path, role, fingerprint, solutions_from)
    for path, reason in archive.failed:
        if manifest.get(path) is None:
            manifest.register(path, "unknown", "", None)
        manifest.mark_failed(path, reason)
    run_dir = Path(run_dir).absolute()
    (run_dir / "casa").mkdir(parents=True, exist_ok=True)
    observations = [obs for plan in archive.plans for obs in plan.observations]
    started, cpu_started = time.perf_counter(), time.process_time()
    finished = {}
    with claimed_outputs(observations):
        futures, finishes = [], []
        for plan in archive.plans:
            calibrator = by_name.get(plan.calibrator) if plan.calibrator else None
            graph = add_calibration_graph(plan, calibrator, str(run_dir))
            for obs in plan.observations:
                finish = dask.delayed(_finish, pure=False)(
                    graph[obs.stem]["outcomes"], plan, obs, calibrator, str(run_dir),
                    default_truth(obs.ms), dask_key_name=f"finish-{obs.stem}-{id(graph):x}",
                )  # fmt: skip
                manifest.mark_running(obs.ms)
                finishes.append(finish)
                futures.append(client.compute(finish))
        total = len(futures)
        if progress is None:
            progress = sys.stderr.isatty()
        task_keys = {str(k) for f in finishes for k in f.__dask_graph__()}
        completed = as_completed(futures)
        done_count = 0
        while not completed.is_empty():
            batch = completed.next_batch(block=False)
            for future in batch:
                done_count += 1
                result = _record(future, manifest, finished)
                if result is None:
                    continue
                counts = manifest.counts()
                verdict = f", QA {result['qa_verdict']}" if result["qa_verdict"] else ""
                line = (
                    f"{done_count}/{total} MS finished: {counts[DONE]} done, "
                    f"{counts[FAILED]} failed; last {Path(result['ms']).name} "
                    f"{result['status']}{verdict}"
                )
                if progress:
                    log.debug(line)
                else:
                    print(line, flush=True)
            if progress:
                failed_now = sum(1 for r in finished.values() if r["status"] != "ok")
                _draw_bar(client, task_keys, done_count, total, failed_now)
            if not batch:
                time.sleep(0.5)
        if progress:
            print(file=sys.stderr)
    for obs in observations:
        if obs.ms not in finished:
            manifest.mark_failed(obs.ms, "its finishing task raised (see the log)")
    return {
        "schema": "dsa110_contimg.reprocess_run",
        "version": 1,
        "wall_seconds": time.perf_counter() - started,
        # the driver holds the client, the manifest and (for a local cluster) the scheduler
        "driver_cpu_seconds": time.process_time() - cpu_started,
        "task_seconds": sum(r["task_seconds"] for r in finished.values()),
        "processed": len(observations),
        "skipped": list(archive.skipped),
        "counts": manifest.counts(),
    }


def _record(future, manifest: Manifest, finished: dict) -> dict | None:
    """Write one finished MS into the manifest; None when its finishing task itself raised."""
    try:
        result = future.result()
    except Exception as error:  # noqa: BLE001 - one MS fails, the rest go on
        log.warning("%s failed: %s", future.key, error)
        return None
    finished[result["ms"]] = result
    if result["status"] == "ok":
        manifest.mark_done(
            result["ms"], [result["output_mms"]], result["applied_tables"],
            result["task_seconds"], result["qa_score"], result["qa_verdict"],
        )  # fmt: skip
    else:
        manifest.mark_failed(result["ms"], result["error"] or "failed", result["task_seconds"])
    return result


def _unfinished_tasks(dask_scheduler, keys) -> int:
    active = ("waiting", "processing", "queued", "no-worker")
    return sum(
        1 for k in keys if k in dask_scheduler.tasks and dask_scheduler.tasks[k].state in active
    )


def _draw_bar(client, task_keys, files_done, files_total, files_failed) -> None:
    """One terminal line: a bar of finished files, and tasks done of all tasks."""
    try:
        remaining = client.run_on_scheduler(_unfinished_tasks, keys=list(task_keys))
    except Exception:  # noqa: BLE001 - the bar is cosmetic
        remaining = 0
    width = 30
    filled = int(width * files_done / max(files_total, 1))
    tasks_done = len(task_keys) - remaining
    sys.stderr.write(
        f"\r[{'#' * filled}{' ' * (width - filled)}] files {files_done}/{files_total}"
        f" ({files_failed} failed) | tasks {tasks_done}/{len(task_keys)}  "
    )
    sys.stderr.flush()


def status_of(manifest: Manifest) -> dict:
    """Every MS with the state to show (a dead run's ``running`` is ``interrupted``), counts."""
    records = [{**r, "state": shown_state(r)} for r in manifest.all()]
    counts = dict.fromkeys((*STATES, INTERRUPTED), 0)
    for r in records:
        counts[r["state"]] += 1
    return {"manifest": str(manifest.path), "counts": counts, "observations": records}


def format_status(manifest: Manifest) -> str:
    status = status_of(manifest)
    records = status["observations"]
    lines = [
        f"{len(records)} MS in {manifest.path}: "
        + ", ".join(f"{n} {state}" for state, n in status["counts"].items()),
        " state       role        QA          seconds  MS",
    ]
    for r in records:
        qa = "-" if r["qa_verdict"] is None else f"{r['qa_verdict']} {r['qa_score']:.2f}"
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(
            f" {r['state']:11s} {r['role']:10s} {qa:11s} {seconds:>8s}  {r['path']}"
            + (f"\n          error: {r['error']}" if r["error"] else "")
        )
    return "\n".join(lines)
