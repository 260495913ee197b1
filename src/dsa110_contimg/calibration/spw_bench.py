"""What each SPW selection costs and buys: calibrate with each, measure, recommend one.

Every selection is its own calibration plan in its own output directory; the
plans run at once on one Dask cluster, so the selections share the workers.
Cost is what each selection's tasks took (task seconds, worker CPU seconds,
the workers' peak memory, visibility bytes its solves read); the wall time of
each is reported too but includes waiting for the others' tasks. Quality is
what calibration achieved: fraction of solutions kept, median solution SNR,
bandpass error against the simulation truth (synthetic MS), and the QA pass's
CORRECTED-MODEL phase scatter and |CORRECTED|/|MODEL| on the calibrator fields.

JSON schema ``dsa110_contimg.spw_bench`` version 1 (README, "SPW selection").
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import re
from pathlib import Path

import numpy as np

from dsa110_contimg.calibration.pipeline import plan_calibration, run_plan
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import caltables
from dsa110_contimg.ms.reads import visibility_bytes
from dsa110_contimg.qa import caltable_kernels
from dsa110_contimg.qa.report import run_qa

log = logging.getLogger(__name__)

SCHEMA = "dsa110_contimg.spw_bench"
VERSION = 1


def selection_label(selection: str) -> str:
    """A directory-safe name for an SPW selection: ``4~11`` -> ``spw4-11``."""
    return "spw" + re.sub(r"[^0-9A-Za-z]+", "-", selection.replace("~", "-")).strip("-")


def _quality(obs, calibrator, truth, run_dir) -> dict:
    """Solutions kept, bandpass SNR and error against the truth, QA of CORRECTED_DATA."""
    tables = obs.merged_tables
    stats = [s for s in obs.solutions.values() if "n_solutions" in s]
    n_solutions = sum(s["n_solutions"] for s in stats)
    kept = sum(s["n_solutions"] * s["kept_fraction"] for s in stats)
    quality = {
        "n_solutions": int(n_solutions),
        "kept_fraction": kept / n_solutions if n_solutions else None,
        "bandpass_snr_median": None,
        "bandpass_amp_error": None,
        "bandpass_phase_error_deg": None,
        "corrected_model_phase_scatter_deg": None,
        "median_corrected_model_amp_ratio": None,
    }
    if "bpcal" in tables:
        solutions = caltables.read_solutions(tables["bpcal"])
        good = ~solutions.flag
        if solutions.snr is not None and good.any():
            quality["bandpass_snr_median"] = float(np.median(solutions.snr[good]))
        if truth is not None:
            from dsa110_contimg.simulate.truth import load_truth

            errors = caltable_kernels.bandpass_truth_errors(
                solutions.values, solutions.flag, solutions.antenna, solutions.spw,
                int(solutions.refant[0]), load_truth(truth).bandpass,
            )  # fmt: skip
            quality["bandpass_amp_error"] = errors["amp_error"]
            quality["bandpass_phase_error_deg"] = errors["phase_error_deg"]
    if obs.output_mms:
        from dsa110_contimg.qa.runner import saved_visibility_qa

        own_pass = saved_visibility_qa(run_dir, obs.stem, obs.output_mms)  # the run's QA pass
        summary = run_qa(obs.output_mms, [], calibrator, visibility_qa=own_pass).summary
        metrics = summary["visibilities"].get("calibrator", {}).get("metrics", {})
        for key in ("corrected_model_phase_scatter_deg", "median_corrected_model_amp_ratio"):
            if key in metrics:
                quality[key] = metrics[key]["value"]
    return quality


def recommend(results: list[dict], tolerance: float) -> dict:
    """The cheapest selection (worker CPU seconds) of quality within ``tolerance`` of the best.

    Quality within tolerance: CORRECTED-MODEL phase scatter at most (1 +
    tolerance) times the best selection's, and kept fraction at least the best
    kept fraction minus ``tolerance``.
    """
    measured = [r for r in results if r["quality"]["corrected_model_phase_scatter_deg"] is not None]
    if not measured:
        return {"selection": None, "reason": "no selection produced calibrated data"}
    best_scatter = min(r["quality"]["corrected_model_phase_scatter_deg"] for r in measured)
    best_kept = max(r["quality"]["kept_fraction"] or 0.0 for r in measured)
    good_enough = [
        r for r in measured
        if r["quality"]["corrected_model_phase_scatter_deg"] <= best_scatter * (1 + tolerance)
        and (r["quality"]["kept_fraction"] or 0.0) >= best_kept - tolerance
    ]  # fmt: skip
    choice = min(good_enough, key=lambda r: r["cost"]["task_cpu_seconds"])
    priciest = max(measured, key=lambda r: r["cost"]["task_cpu_seconds"])
    ratio = choice["cost"]["task_cpu_seconds"] / max(priciest["cost"]["task_cpu_seconds"], 1e-9)
    scatter = choice["quality"]["corrected_model_phase_scatter_deg"]
    reason = (
        f"cheapest within {tolerance:.0%} of the best quality: phase scatter {scatter:.2f} deg "
        f"(best {best_scatter:.2f}), kept {choice['quality']['kept_fraction']:.1%} "
        f"(best {best_kept:.1%}); costs {ratio:.2f}x the CPU of {priciest['selection']}"
    )
    return {"selection": choice["selection"], "reason": reason}


def bench_spw_selections(ms, selections, calibrator, fields, refant, config, out_dir, run,
                         truth=None, tolerance: float = 0.1) -> dict:  # fmt: skip
    """Calibrate ``ms`` once per selection (concurrently in ``run``, a ``RunContext``);
    the comparison dict. Each selection's logs go to ``run.run_dir/bench-spw/<label>``.
    """
    if len(set(selections)) != len(selections):
        raise ContimgError("each SPW selection may be given once")
    out_dir, run_dir = Path(out_dir), Path(run.run_dir) / "bench-spw"
    plans = {
        s: plan_calibration(
            [str(ms)],
            calibrator,
            {str(ms): fields},
            refant,
            config,
            out_dir / selection_label(s),
            spw_selection=s,
        )  # fmt: skip
        for s in selections
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans)) as pool:
        futures = {
            s: pool.submit(
                run_plan, plan, run.client, run_dir / selection_label(s), calibrator, progress=False
            )  # fmt: skip
            for s, plan in plans.items()
        }
        summaries = {s: f.result() for s, f in futures.items()}
    results = []
    for selection in selections:
        summary = summaries[selection]
        (obs,) = summary.observations
        spws = [p.spw for p in plans[selection].observations[0].pieces]
        results.append({
            "selection": selection,
            "spws": spws,
            "status": summary.status,
            "calibrated_spws": obs.calibrated_spws,
            "quality": _quality(obs, calibrator, truth, run_dir / selection_label(selection)),
            "cost": {
                "wall_seconds": summary.wall_seconds,
                "task_seconds": obs.task_seconds,
                "task_cpu_seconds": obs.task_cpu_seconds,
                "peak_worker_rss_gb": obs.peak_worker_rss_gb,
                "visibility_bytes": visibility_bytes(ms, spws),
            },
            "output_mms": obs.output_mms,
            "tables": obs.merged_tables,
        })  # fmt: skip
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "ms": str(ms),
        "calibrator": calibrator.name,
        "fields": list(fields),
        "tolerance": tolerance,
        "concurrent": True,
        "selections": results,
        "recommendation": recommend(results, tolerance),
    }


def format_spw_bench(result: dict) -> str:
    lines = [
        f"SPW selections on {result['ms']} (calibrated concurrently; cost = their own tasks)",
        " selection  SPWs  kept    SNR   bp amp err  bp phase err  C-M phase  |C|/|M|  "
        "CPU (s)  task (s)  wall (s)  peak (GB)  read (MB)",
    ]
    for r in result["selections"]:
        q, c = r["quality"], r["cost"]
        lines.append(
            f" {r['selection']:9s} {len(r['spws']):5d} {_f(q['kept_fraction'], '6.1%')}"
            f" {_f(q['bandpass_snr_median'], '6.1f')}   {_f(q['bandpass_amp_error'], '8.2%')}"
            f"   {_f(q['bandpass_phase_error_deg'], '8.2f')}    "
            f"{_f(q['corrected_model_phase_scatter_deg'], '7.2f')}  "
            f"{_f(q['median_corrected_model_amp_ratio'], '6.3f')}  {c['task_cpu_seconds']:7.1f}"
            f"  {c['task_seconds']:8.1f}  {c['wall_seconds']:8.1f}  {c['peak_worker_rss_gb']:9.2f}"
            f"  {c['visibility_bytes'] / 1e6:9.1f}"
        )
    rec = result["recommendation"]
    lines.append(f"recommendation: {rec['selection']}: {rec['reason']}")
    return "\n".join(lines)


def _f(value, fmt: str) -> str:
    width = int(re.match(r"\d+", fmt).group())
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return format(value, fmt)


def plot_spw_bench(result: dict, png) -> str:
    """Quality (CORRECTED-MODEL phase scatter) against cost (worker CPU s), one point each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4))
    for r in result["selections"]:
        x = r["cost"]["task_cpu_seconds"]
        y = r["quality"]["corrected_model_phase_scatter_deg"]
        if y is None:
            continue
        recommended = r["selection"] == result["recommendation"]["selection"]
        ax.plot(x, y, "o", ms=9 if recommended else 6, color="C3" if recommended else "C0")
        ax.annotate(f"{r['selection']} ({len(r['spws'])} SPW)", (x, y),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)  # fmt: skip
    ax.set_xlabel("cost: worker CPU seconds of its tasks")
    ax.set_ylabel("CORRECTED-MODEL phase scatter (deg)")
    ax.set_title("SPW selections: quality vs cost (red: recommended)")
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    plt.close(figure)
    return str(png)
