"""Time building a synthetic DSA-110 observation.

Baseline (same run): the casatools simulator alone laying out the same rows
(what any CASA-based simulation pays). Reported: wall time, rows/s and peak
memory of the full simulation, and its ratio to the baseline.
Targets for the ``full`` preset on a 2-core machine: under 120 s and 3 GB.

    python benchmarks/bench_simulate.py [--preset full] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import tempfile

from harness import parse_args, run_child, summarise, write_result

SETUP = """
import shutil
from pathlib import Path
from dsa110_contimg.simulate import preset, simulate_observation
from dsa110_contimg.simulate.plan import plan_observation
from dsa110_contimg.simulate.ms_skeleton import build_ms_skeleton
config = preset({preset!r})
out = Path({out!r})
shutil.rmtree(out, ignore_errors=True)
"""


SKELETON_ONLY = "build_ms_skeleton(str(out), plan_observation(config), config.autocorrelations)"


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)

    runs = {"skeleton_only": [], "simulate": []}
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as scratch:
        out = f"{scratch}/bench.ms"
        setup = SETUP.format(preset=args.preset, out=out)
        for _ in range(args.repeat):
            runs["skeleton_only"].append(run_child(SKELETON_ONLY, setup))
            runs["simulate"].append(
                run_child("result = simulate_observation(out, config, overwrite=True)", setup)
            )
            from casacore.tables import table

            with table(out, ack=False) as main_table:
                n_rows = main_table.nrows()

    sim_s = summarise([r["seconds"] for r in runs["simulate"]])
    base_s = summarise([r["seconds"] for r in runs["skeleton_only"]])
    peak = summarise([r["peak_rss_gb"] for r in runs["simulate"]])
    payload = {
        "benchmark": "simulate",
        "preset": args.preset,
        "repeat": args.repeat,
        "rows": n_rows,
        "simulate_seconds": sim_s,
        "baseline_skeleton_seconds": base_s,
        "seconds": {"simulate": sim_s, "skeleton_only": base_s},
        "ratio_to_baseline": sim_s["median"] / base_s["median"],
        "rows_per_second": n_rows / sim_s["median"],
        "peak_rss_gb": peak,
        # targets for the full-size observation (smaller ones meet them trivially)
        "targets": {"simulate_seconds": 120, "peak_rss_gb": 3.0},
    }
    print(
        f"simulate[{args.preset}]: {n_rows} rows in {sim_s['median']:.1f} s "
        f"(min {sim_s['min']:.1f}, max {sim_s['max']:.1f}); "
        f"{payload['rows_per_second']:.0f} rows/s; "
        f"peak {peak['median']:.2f} GB; {payload['ratio_to_baseline']:.2f}x the simulator-only "
        f"baseline ({base_s['median']:.1f} s)"
    )
    if not args.quick:
        print(f"written {write_result(f'simulate-{args.preset}', payload)}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
