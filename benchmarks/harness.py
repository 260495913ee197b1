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


def write_result(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
