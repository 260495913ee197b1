"""How calibration and QA cost grow with rows, channels, SPWs and the number of MS.

For each axis, three (or more) sizes of a synthetic observation are
calibrated on a 2-worker local Dask cluster (the default recipe) and then
QA'd; every other parameter stays at the base. Each size is fitted with a
straight line (cost = a + b x); the figure says how far the largest size
lies from the line through the smaller ones (linear growth: near 0 %), and
plots the points with the fits. Baseline in the same run: the smallest size.

    python benchmarks/bench_scaling.py [--quick] [--repeat 3]
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from harness import RESULTS_DIR, summarise, write_result

AXES = {
    # axis: (simulation parameter, sizes); the base is the `small` preset
    "rows": ("n_times", (24, 48, 96)),
    "channels": ("n_chan", (16, 32, 64)),
    "spws": ("n_spw", (4, 8, 16)),
    "n_ms": (None, (1, 2, 4)),
}
QUICK_AXES = {
    "rows": ("n_times", (4, 6, 8)),
    "channels": ("n_chan", (2, 4, 8)),
    "spws": ("n_spw", (1, 2, 4)),
    "n_ms": (None, (1, 2, 3)),
}


def fit(xs, ys) -> dict:
    """Least-squares line, R^2, and the largest point's excess over the smaller points' line."""
    import numpy as np

    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(xs, ys, 1)
    predicted = intercept + slope * xs
    total = ((ys - ys.mean()) ** 2).sum()
    r2 = 1 - ((ys - predicted) ** 2).sum() / total if total > 0 else 1.0
    small_slope, small_intercept = np.polyfit(xs[:-1], ys[:-1], 1)
    expected_last = small_intercept + small_slope * xs[-1]
    return {
        "slope": float(slope),
        "intercept": float(intercept),
        "r2": float(r2),
        "largest_over_linear": float(ys[-1] / expected_last) if expected_last > 0 else None,
    }


def _ratio(fitted: dict) -> str:
    value = fitted["largest_over_linear"]
    return "n/a" if value is None else f"{value:.2f}x"


def measure(config, n_ms: int, scratch: Path, client) -> dict:
    """Calibrate ``n_ms`` copies of one observation in one plan, then QA each; seconds."""
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import plan_calibration, run_plan
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields
    from dsa110_contimg.qa.report import run_qa
    from dsa110_contimg.simulate import simulate_observation
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    calibrator = lookup_calibrator(config.calibrator)
    work = Path(tempfile.mkdtemp(dir=scratch))
    first = work / "obs0.ms"
    simulate_observation(first, config)
    ms_list = [str(first)]
    for i in range(1, n_ms):
        copy = work / f"obs{i}.ms"
        shutil.copytree(first, copy)
        ms_list.append(str(copy))
    fields = choose_fields(first, calibrator, FieldChoice(auto=True))
    plan = plan_calibration(
        ms_list, calibrator, {ms: fields for ms in ms_list}, "103", resolve_config(), work / "out"
    )
    started = time.perf_counter()
    summary = run_plan(plan, client, work / "run", calibrator, progress=False)
    calibration = time.perf_counter() - started
    if summary.status != "ok":
        raise RuntimeError(f"calibration failed: {summary.failure_lines()}")
    started = time.perf_counter()
    for obs in summary.observations:
        run_qa(obs.output_mms, [], calibrator, scheduler="threads")
    qa = time.perf_counter() - started
    with __import__("casacore.tables", fromlist=["table"]).table(str(first), ack=False) as t:
        rows = t.nrows()
    shutil.rmtree(work)
    return {
        "calibration_s": calibration,
        "calibration_cpu_s": sum(o.task_cpu_seconds for o in summary.observations),
        "qa_s": qa,
        "rows_per_ms": rows,
    }


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(2, len(results), figsize=(4 * len(results), 6.5))
    for column, (axis, entry) in enumerate(results.items()):
        xs = np.array(entry["sizes"], float)
        for row, cost in enumerate(("calibration_s", "qa_s")):
            ys = np.array([p[cost]["median"] for p in entry["points"]])
            lo = np.array([p[cost]["min"] for p in entry["points"]])
            hi = np.array([p[cost]["max"] for p in entry["points"]])
            ax = axes[row, column]
            ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="o")
            f = entry["fits"][cost]
            grid = np.linspace(0, xs.max() * 1.05, 50)
            ax.plot(grid, f["intercept"] + f["slope"] * grid, "--",
                    label=f"linear, R2={f['r2']:.3f}")  # fmt: skip
            ax.set_xlabel(f"{axis} ({entry['parameter'] or 'MS in one run'})")
            ax.set_ylabel(f"{cost.removesuffix('_s')} wall (s)")
            ax.legend(fontsize=7)
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
    figure.suptitle("Cost growth: calibration (top) and QA (bottom), 2 workers")
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    plt.close(figure)


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    args = parser.parse_args(argv)

    from dsa110_contimg.cluster import dask_client
    from dsa110_contimg.simulate import preset

    base = preset("tiny" if args.quick else "small")
    axes = QUICK_AXES if args.quick else AXES
    repeat = 1 if args.quick else args.repeat
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch,
        dask_client(n_workers=2) as client,
    ):
        for axis, (parameter, sizes) in axes.items():
            points = []
            for size in sizes:
                config = base.replace(**{parameter: size}) if parameter else base
                runs = [measure(config, 1 if parameter else size, Path(scratch), client)
                        for _ in range(repeat)]  # fmt: skip
                points.append({
                    key: summarise([r[key] for r in runs])
                    for key in ("calibration_s", "calibration_cpu_s", "qa_s")
                } | {"rows_per_ms": runs[0]["rows_per_ms"]})  # fmt: skip
            results[axis] = {
                "parameter": parameter,
                "sizes": list(sizes),
                "points": points,
                "fits": {
                    cost: fit(sizes, [p[cost]["median"] for p in points])
                    for cost in ("calibration_s", "calibration_cpu_s", "qa_s")
                },
            }
    payload = {"benchmark": "scaling", "base": "tiny" if args.quick else "small",
               "repeat": repeat, "axes": results}  # fmt: skip
    for axis, entry in results.items():
        cal, qa = entry["fits"]["calibration_s"], entry["fits"]["qa_s"]
        print(
            f"{axis:8s} sizes {entry['sizes']}: calibration "
            f"{[round(p['calibration_s']['median'], 1) for p in entry['points']]} s "
            f"(R2 {cal['r2']:.3f}, largest {_ratio(cal)} the linear ratio), "
            f"QA {[round(p['qa_s']['median'], 2) for p in entry['points']]} s "
            f"(R2 {qa['r2']:.3f}, largest {_ratio(qa)})"
        )
    if not args.quick:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        png = RESULTS_DIR / f"scaling-{time.strftime('%Y-%m-%d')}.png"
        plot(results, png)
        payload["plot"] = str(png)
        print(f"written {write_result('scaling-small', payload)} and {png}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
