"""Archive throughput: 1, 2, 4 and 8 identical calibrator files through `contimg reprocess`.

Each count is a fresh run on a 2-worker local cluster (every file solved,
applied and QA'd). Reported per count: MS per hour, GB/s of visibilities
(the DATA column), task seconds per file (must not grow by more than 10 % as
the count grows; baseline: one file in the same run; it may fall, as each
worker's CASA start-up is shared by more files) and the orchestration
overhead: the driver's CPU time (client, manifest, and the local scheduler,
which lives in the driver) over the sum of task times (target < 5 %). Then a
paper estimate for a 288-file night on 16 nodes x 32 cores from the measured
per-file task time and one file's critical path.

    python benchmarks/bench_archive.py [--preset small] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import summarise, write_result

NIGHT_FILES = 288
CLUSTER_CORES = 16 * 32


def run_reprocess(source: Path, out: Path, run_dir: Path) -> dict:
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(run_dir), "reprocess",
            str(source), "--out", str(out), "--n-workers", "2"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"reprocess failed:\n{result.stderr[-3000:]}")
    return json.loads((run_dir / "reprocess_summary.json").read_text())


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny preset, 1 and 2 files")
    args = parser.parse_args(argv)
    counts = (1, 2) if args.quick else (1, 2, 4, 8)
    preset_name = "tiny" if args.quick else args.preset
    repeat = 1 if args.quick else args.repeat

    from casacore.tables import table

    from dsa110_contimg.simulate import preset, simulate_observation

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as scratch:
        scratch = Path(scratch)
        original = scratch / "original.ms"
        simulate_observation(original, preset(preset_name, drift_phase_rms_deg=0.0))
        with table(str(original), ack=False) as t:
            data_bytes = t.nrows() * t.getcell("DATA", 0).size * 8
        for n in counts:
            runs = []
            for r in range(repeat):
                source = scratch / f"in{n}-{r}"
                source.mkdir()
                for i in range(n):
                    shutil.copytree(original, source / f"file{i:02d}.ms")
                runs.append(run_reprocess(source, scratch / f"out{n}-{r}", scratch / f"run{n}-{r}"))
                shutil.rmtree(source)
            wall = summarise([x["wall_seconds"] for x in runs])
            tasks = summarise([x["task_seconds"] for x in runs])
            driver = summarise([x["driver_cpu_seconds"] for x in runs])
            results[n] = {
                "wall_seconds": wall,
                "task_seconds": tasks,
                "driver_cpu_seconds": driver,
                "ms_per_hour": 3600 * n / wall["median"],
                "visibility_gb_per_s": n * data_bytes / 1e9 / wall["median"],
                "task_seconds_per_file": tasks["median"] / n,
                "orchestration_over_tasks": driver["median"] / tasks["median"],
            }
    base = results[counts[0]]["task_seconds_per_file"]
    per_file = [r["task_seconds_per_file"] / base for r in results.values()]
    per_file_spread = max(abs(x - 1) for x in per_file)
    per_file_growth = max(x - 1 for x in per_file)  # 0 when no count costs more than one file
    largest = results[counts[-1]]
    one_file_wall = results[counts[0]]["wall_seconds"]["median"]
    estimate = max(NIGHT_FILES * largest["task_seconds_per_file"] / CLUSTER_CORES, one_file_wall)
    payload = {
        "benchmark": "archive",
        "preset": preset_name,
        "repeat": repeat,
        "data_bytes_per_file": data_bytes,
        "counts": {str(n): r for n, r in results.items()},
        "task_seconds_per_file_spread": per_file_spread,
        "task_seconds_per_file_growth": per_file_growth,
        "orchestration_over_tasks": max(r["orchestration_over_tasks"] for r in results.values()),
        "night_estimate_seconds": estimate,
        "targets": {"task_seconds_per_file_growth": 0.10, "orchestration_over_tasks": 0.05},
    }
    for n, r in results.items():
        print(
            f"{n} file(s): wall {r['wall_seconds']['median']:.1f} s, {r['ms_per_hour']:.0f} MS/h, "
            f"{r['visibility_gb_per_s'] * 1000:.2f} MB/s of DATA, task s per file "
            f"{r['task_seconds_per_file']:.1f} (ratio to 1 file "
            f"{r['task_seconds_per_file'] / base:.2f}x), orchestration "
            f"{r['orchestration_over_tasks']:.1%} of task time"
        )
    print(
        f"per-file cost: grows at most {per_file_growth:.1%} over one file (target < 10 %), "
        f"spread {per_file_spread:.1%}; a {NIGHT_FILES}-file night "
        f"on {CLUSTER_CORES} cores: about {estimate / 60:.1f} min ({NIGHT_FILES} x "
        f"{largest['task_seconds_per_file']:.1f} task s / {CLUSTER_CORES} cores, at least one "
        f"file's {one_file_wall:.0f} s critical path)"
    )
    if not args.quick:
        print(f"written {write_result(f'archive-{preset_name}', payload)}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
