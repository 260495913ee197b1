"""The result of a calibration (or apply-only) run: typed, and as summary.json.

``summarise`` turns the step outcomes of a run into a :class:`RunSummary`
with one :class:`ObservationResult` per MS; ``to_json`` gives the
documented summary.json (schema ``dsa110_contimg.calibration_run`` v1).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.outcomes import FAILED, OK, SKIPPED
from dsa110_contimg.calibration.plan import CalibrationPlan
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.qa.scores import DEFAULT_THRESHOLDS as DEFAULT_QA_THRESHOLDS

SUMMARY_SCHEMA = "dsa110_contimg.calibration_run"
SUMMARY_VERSION = 1
DEGRADED = "degraded"
# Solutions kept below this fraction make a run degraded (the QA warning limit
# of the flagged fraction of solutions).
KEPT_WARNING = 1.0 - DEFAULT_QA_THRESHOLDS["caltable_flagged_fraction"].warning


@dataclass(frozen=True)
class ObservationResult:
    """What a run did to one MS."""

    ms: str
    role: str  # calibrator or target
    output_mms: str | None  # the calibrated Multi-MS, None when nothing was published
    calibrated_spws: list
    merged_tables: dict  # step -> published caltable (all SPWs)
    given_tables: list  # caltables applied as given (apply runs)
    solutions: dict  # "<step>/spw<N>" -> table and solution statistics
    phasing: dict  # "spw<N>" -> model check of the solve fields
    outcome: str  # ok, degraded or failed
    degraded: list  # why a finished run lost data
    failed: list  # {step, spw, error}
    skipped: list  # {step, spw, error}
    step_seconds: dict
    task_seconds: float
    task_cpu_seconds: float
    peak_worker_rss_gb: float
    steps: list  # {step, spw, status, seconds, attempts, error}

    @property
    def stem(self) -> str:
        return Path(self.ms).name.removesuffix(".ms")

    @property
    def tables(self) -> list[str]:
        """The caltables that made CORRECTED_DATA: solved here, else given."""
        return list(self.merged_tables.values()) or list(self.given_tables)

    def failure_lines(self) -> list[str]:
        return [
            f"{Path(self.ms).name} {f['step']}"
            + (f" spw {f['spw']}" if f["spw"] >= 0 else "")
            + f": {f['error']}"
            for f in self.failed
        ]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSummary:
    status: str  # ok, degraded or failed (the worst of the observations)
    calibrator: str | None
    output_dir: str
    wall_seconds: float
    config: dict
    observations: tuple[ObservationResult, ...]
    summary_path: str | None = None  # where summary.json was written

    def to_json(self) -> dict:
        """summary.json: the documented schema."""
        return {
            "schema": SUMMARY_SCHEMA,
            "version": SUMMARY_VERSION,
            "status": self.status,
            "calibrator": self.calibrator,
            "output_dir": self.output_dir,
            "wall_seconds": self.wall_seconds,
            "config": self.config,
            "observations": [o.to_json() for o in self.observations],
        }

    def degraded_lines(self) -> list[str]:
        return [f"{Path(o.ms).name} {r}" for o in self.observations for r in o.degraded]

    def failure_lines(self) -> list[str]:
        return [line for o in self.observations for line in o.failure_lines()]


def summarise(plan: CalibrationPlan, results: dict, wall_seconds: float) -> RunSummary:
    """The run's summary from each observation's step outcomes (``results[stem]``)."""
    observations = tuple(
        _observation_result(obs, plan.config, results[obs.stem]) for obs in plan.observations
    )
    outcomes = {o.outcome for o in observations}
    return RunSummary(
        status=FAILED if FAILED in outcomes else DEGRADED if DEGRADED in outcomes else OK,
        calibrator=plan.calibrator,
        output_dir=plan.output_dir,
        wall_seconds=wall_seconds,
        config=plan.config.to_dict(),
        observations=observations,
    )


def _observation_result(obs, config: CalibrationConfig, outcomes) -> ObservationResult:
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
    failed = [_brief(o) for o in outcomes if o.status == FAILED]
    skipped = [_brief(o) for o in outcomes if o.status == SKIPPED]
    degraded = [] if failed else _degraded_reasons(obs, config, solutions, skipped)
    return ObservationResult(
        ms=obs.ms,
        role=obs.role,
        output_mms=published.detail["output_mms"] if published.ok else None,
        calibrated_spws=published.detail.get("calibrated_spws", []),
        merged_tables=merged,
        given_tables=list(obs.given_tables),
        solutions=solutions,
        phasing={f"spw{o.spw}": o.detail for o in outcomes if o.step == "model" and o.ok},
        outcome=FAILED if failed else DEGRADED if degraded else OK,
        degraded=degraded,
        failed=failed,
        skipped=skipped,
        step_seconds=dict(timings),
        task_seconds=round(sum(o.seconds for o in outcomes), 3),
        task_cpu_seconds=round(sum(o.cpu_seconds for o in outcomes), 3),
        peak_worker_rss_gb=round(max((o.peak_rss_gb for o in outcomes), default=0), 3),
        steps=[
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
    )


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


def format_summary(summary: RunSummary) -> str:
    lines = []
    for obs in summary.observations:
        lines.append(f"{obs.role} {obs.ms}")
        lines.append(f"  calibrated MS: {obs.output_mms or 'none (see failures)'}")
        lines.append(f"  calibrated SPWs: {obs.calibrated_spws}")
        verdicts: dict[str, int] = {}
        for spw in obs.phasing.values():
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
        for step, table in obs.merged_tables.items():
            lines.append(f"  {step}: {table}")
        for key, stats in obs.solutions.items():
            if "kept_fraction" in stats:
                lines.append(
                    f"  {key:14s} kept {100 * stats['kept_fraction']:5.1f} %"
                    + (f"  SNR median {stats['snr_median']:.1f}" if "snr_median" in stats else "")
                )
        for item in obs.failed:
            lines.append(f"  FAILED {item['step']} spw {item['spw']}: {item['error']}")
        for reason in obs.degraded:
            lines.append(f"  DEGRADED {reason}")
        for item in obs.skipped:
            if item["error"] == "SPW fully flagged":
                lines.append(f"  skipped spw {item['spw']}: fully flagged")
        slowest = sorted(obs.step_seconds.items(), key=lambda kv: -kv[1])[:6]
        lines.append("  task seconds: " + ", ".join(f"{step} {sec:.1f}" for step, sec in slowest))
    lines.append(f"wall time {summary.wall_seconds:.1f} s; status {summary.status}")
    return "\n".join(lines)
