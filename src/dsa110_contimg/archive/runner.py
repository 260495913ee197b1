"""Reprocess an archive: every calibrator solved, every target calibrated, all QA'd, one graph.

The archive plan (``archive/plan.py``) says what runs. All its plans' graphs,
plus a finishing task per MS (summary and QA report), are submitted
together, so solves, applies and QA of different files overlap on the
cluster; the manifest is updated as each MS finishes. Subband files to
convert are submitted with them: as each observation is converted, the plans
waiting for it are made and join the same graph, so conversions of later
observations overlap the calibration of earlier ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
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
from dsa110_contimg.archive.plan import ArchivePlan, DeferredPlan, make_deferred
from dsa110_contimg.archive.raw import RawPlan, record_conversion, register_conversions
from dsa110_contimg.calibration.graph import add_calibration_graph
from dsa110_contimg.calibration.pipeline import claimed_outputs
from dsa110_contimg.calibration.plan import applied_steps
from dsa110_contimg.calibration.summary import summarise
from dsa110_contimg.errors import ContimgError

log = logging.getLogger(__name__)


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
                progress: bool | None = None, raw: RawPlan | None = None) -> dict:  # fmt: skip
    """Run every plan's graph on ``client``; update the manifest as each MS finishes.

    With ``raw``, its observations are converted on the same cluster, and each
    deferred plan is made and submitted as soon as the observations it needs are
    converted, while the other conversions and plans still run.
    """
    run = _ArchiveRun(archive, client, manifest, Path(run_dir).absolute(), catalog)
    pending = set()
    if raw is not None:
        register_conversions(raw, manifest)
        pending = {job.output_ms for job in raw.conversions.jobs}
    for path, (role, fingerprint, solutions_from) in archive.roles.items():
        if path not in archive.skipped and path not in pending:
            manifest.register(path, role, fingerprint, solutions_from)
    for path, reason in archive.failed:
        if path in pending:
            continue  # registered once converted
        if manifest.get(path) is None:
            manifest.register(path, "unknown", "", None)
        manifest.mark_failed(path, reason)
    (run.run_dir / "casa").mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as claims:
        run.claims = claims
        for job in raw.conversions.jobs if raw is not None else ():
            run.submit_conversion(job)
        for plan in archive.plans:
            run.submit_plan(plan)
        if progress is None:
            progress = sys.stderr.isatty()
        done_count = 0
        while not run.completed.is_empty():
            batch = run.completed.next_batch(block=False)
            for future in batch:
                if future.key in run.conversions:
                    run.converted(future)
                    continue
                done_count += 1
                result = _record(future, manifest, run.finished)
                if result is None:
                    continue
                counts = manifest.counts()
                verdict = f", QA {result['qa_verdict']}" if result["qa_verdict"] else ""
                line = (
                    f"{done_count}/{run.total} MS finished: {counts[DONE]} done, "
                    f"{counts[FAILED]} failed; last {Path(result['ms']).name} "
                    f"{result['status']}{verdict}"
                )
                if progress:
                    log.debug(line)
                else:
                    print(line, flush=True)
            if progress:
                failed_now = sum(1 for r in run.finished.values() if r["status"] != "ok")
                _draw_bar(client, run.task_keys, done_count, run.total, failed_now)
            if not batch:
                time.sleep(0.5)
        if progress:
            print(file=sys.stderr)
    for ms in run.submitted:
        if ms not in run.finished:
            manifest.mark_failed(ms, "its finishing task raised (see the log)")
    return {
        "schema": "dsa110_contimg.reprocess_run",
        "version": 1,
        "wall_seconds": time.perf_counter() - started,
        # the driver holds the client, the manifest and (for a local cluster) the scheduler
        "driver_cpu_seconds": time.process_time() - cpu_started,
        "task_seconds": sum(r["task_seconds"] for r in run.finished.values()),
        "processed": len(run.submitted),
        "converted": run.n_converted,
        "skipped": list(archive.skipped),
        "counts": manifest.counts(),
    }


class _ArchiveRun:
    """The futures of one archive run: conversions, plans, and plans waiting for conversions."""

    def __init__(self, archive: ArchivePlan, client, manifest: Manifest, run_dir: Path, catalog):
        from distributed import as_completed

        self.archive, self.client, self.manifest, self.run_dir = archive, client, manifest, run_dir
        self.by_name = {c.name: c for c in catalog}
        self.deferred = list(archive.deferred)
        self.completed = as_completed()
        self.conversions: dict = {}  # future key -> (job, submitted at)
        self.task_keys: set[str] = set()
        self.submitted: list[str] = []  # MS with a finishing task
        self.finished: dict = {}
        self.orphans: dict[str, str] = {}  # target MS -> why it has no plan
        self.total = 0
        self.n_converted = 0
        self.claims = None

    def submit_conversion(self, job) -> None:
        from dsa110_contimg.raw.convert import add_conversion_graph

        graph = add_conversion_graph(job)
        self.task_keys |= {str(k) for k in graph.__dask_graph__()}
        future = self.client.compute(graph)
        self.conversions[future.key] = (job, time.perf_counter())
        self.completed.add(future)

    def submit_plan(self, plan) -> None:
        from dsa110_contimg.qa.runner import default_truth

        self.claims.enter_context(claimed_outputs(plan.observations))
        calibrator = self.by_name.get(plan.calibrator) if plan.calibrator else None
        # the QA of each finished MS runs here, beside the workers, not as tasks of theirs
        graph = add_calibration_graph(plan, calibrator, str(self.run_dir), keep_qa=False)
        for obs in plan.observations:
            finish = dask.delayed(_finish, pure=False)(
                graph[obs.stem]["outcomes"], plan, obs, calibrator, str(self.run_dir),
                default_truth(obs.ms), dask_key_name=f"finish-{obs.stem}-{id(graph):x}",
            )  # fmt: skip
            self.manifest.mark_running(obs.ms)
            self.task_keys |= {str(k) for k in finish.__dask_graph__()}
            self.completed.add(self.client.compute(finish))
            self.submitted.append(obs.ms)
            self.total += 1

    def converted(self, future) -> None:
        """One observation converted (or not): its MS registered, and the plans it
        completes made and submitted."""
        from dsa110_contimg.raw.convert import conversion_result

        job, submitted = self.conversions.pop(future.key)
        result = conversion_result(job, future)
        record_conversion(job, result, self.manifest, time.perf_counter() - submitted)
        ms = job.output_ms
        if result.get("error"):
            self._conversion_failed(ms, result["error"])
            return
        self.n_converted += 1
        role, _, solutions_from = self.archive.roles.get(ms, ("target", "", None))
        self.manifest.register(ms, role, discover.fingerprint(ms), solutions_from)
        for path, reason in self.archive.failed:
            if path == ms:
                self.manifest.mark_failed(ms, reason)
        if ms in self.orphans:
            self.manifest.mark_failed(ms, self.orphans.pop(ms))
        self._keep_or_submit([deferred.without(ms) for deferred in self.deferred])

    def _conversion_failed(self, ms: str, reason: str) -> None:
        updated = []
        for deferred in self.deferred:
            if deferred.calibrator_ms == ms and deferred.solves:
                why = f"its calibrator file could not be converted: {reason}"
                for target in deferred.targets:
                    self._fail_target(target, why)
                continue
            if ms in deferred.targets:
                deferred = deferred.drop_target(ms)
                if not deferred.targets and not deferred.solves:
                    continue
            updated.append(deferred)
        self._keep_or_submit(updated)

    def _keep_or_submit(self, updated) -> None:
        """Submit the deferred plans that wait for nothing now; keep the others."""
        self.deferred = []
        for deferred in updated:
            if deferred.waits_for:
                self.deferred.append(deferred)
            else:
                self._make_and_submit(deferred)

    def _fail_target(self, target: str, why: str) -> None:
        if target in self.archive.roles and not self._waiting(target):
            self.manifest.mark_failed(target, why)
        else:
            self.orphans[target] = why

    def _waiting(self, ms: str) -> bool:
        return any(job.output_ms == ms for job, _ in self.conversions.values())

    def _make_and_submit(self, deferred: DeferredPlan) -> None:
        try:
            plan = make_deferred(self.archive.settings, deferred)
        except ContimgError as error:
            for ms in deferred.observations:
                self.manifest.mark_failed(ms, str(error))
            return
        self.submit_plan(plan)


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
