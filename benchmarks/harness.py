"""Shared benchmark plumbing: isolated child runs, repeat statistics, result files.

Each measurement runs in a fresh Python process so its peak memory (maximum
resident set size) is its own. Figures are medians of the repetitions with
min and max; ratios compare against a baseline measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"

_CHILD_TEMPLATE = """
import json, resource, time
{setup}
started = time.perf_counter()
{body}
seconds = time.perf_counter() - started
print("BENCH_RESULT " + json.dumps({{
    "seconds": seconds,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
}}))
"""


def parse_args(description: str, argv=None):
    """The options every benchmark takes: --preset, --repeat, --quick (tiny, once)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny preset, one repetition")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.repeat = "tiny", 1
    return args


def run_child(body: str, setup: str = "") -> dict:
    """Run ``body`` in a new interpreter; returns seconds (body only) and peak RSS."""
    code = _CHILD_TEMPLATE.format(setup=setup, body=body)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr[-3000:]}")
    line = [x for x in result.stdout.splitlines() if x.startswith("BENCH_RESULT ")][-1]
    return json.loads(line.split(" ", 1)[1])


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise_run_ratios(numerator_runs: list[dict], denominator_runs: list[dict]) -> dict:
    """Median, min and max of per-repetition ratios of two contenders' ``seconds``.

    Repetition i of one is divided by repetition i of the other (measured in
    the same round), so slow drifts of the machine cancel.
    """
    return summarise(
        [a["seconds"] / b["seconds"] for a, b in zip(numerator_runs, denominator_runs, strict=True)]
    )


def summarise_runs(runs: list[dict]) -> dict:
    """Median/min/max of every number the repetitions of one contender reported."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: summarise([r[k] for r in runs]) for k in keys}


def write_result(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def run_tree_measured(argv, env=None, cwd=None, interval_s: float = 0.5) -> dict:
    """Run a command; wall time, CPU seconds and peak RSS summed over its process tree.

    For runs that spread over processes (Dask workers, MPI ranks) one
    process's own figures would hide most of the cost. The command's stdout
    is returned too.
    """
    import tempfile

    import psutil

    # Output goes to files, not pipes: a pipe the polling loop does not drain fills
    # (64 KB) and blocks the command for ever.
    out_file = tempfile.TemporaryFile(mode="w+")
    err_file = tempfile.TemporaryFile(mode="w+")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out_file, stderr=err_file, text=True, env=env, cwd=cwd)
    root = psutil.Process(proc.pid)
    cpu_by_pid: dict[int, float] = {}
    peak_rss = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = 0
        for p in tree:
            try:
                times = p.cpu_times()
                cpu_by_pid[p.pid] = times.user + times.system
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        peak_rss = max(peak_rss, rss)
        time.sleep(interval_s)
    proc.wait()
    seconds = time.perf_counter() - started
    out_file.seek(0)
    err_file.seek(0)
    stdout, stderr = out_file.read(), err_file.read()
    out_file.close()
    err_file.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {
        "seconds": seconds,
        "cpu_seconds": sum(cpu_by_pid.values()),
        "peak_rss_gb": peak_rss / 1024**3,
        "stdout": stdout,
    }
