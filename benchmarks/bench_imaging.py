"""Imaging DATA and CORRECTED of several fields: Dask (2 workers) against serial tclean.

Both contenders make the same images with the same tclean parameters (the
project's DSA-110 defaults) from one calibrated synthetic observation:
  (a) serial: the tclean calls one after another in one process;
  (b) this project: one Dask task per (field, column) on 2 single-threaded workers.
Each repetition runs both, alternating which goes first. Reported: medians
with min and max of wall time, CPU time, tclean time and peak memory (process
tree), and of the per-repetition ratio (target <= 0.6x on 2 cores).

    python benchmarks/bench_imaging.py [--preset small] [--fields 8~15] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness import run_tree_measured, summarise_run_ratios, summarise_runs, write_result

SERIAL_CHILD = """
import json, sys, time
from dsa110_contimg.casa import tasks
from dsa110_contimg.imaging.pipeline import tclean_parameters
from dsa110_contimg.imaging.plan import ImagingConfig, plan_imaging

ms, fields, out = sys.argv[1], sys.argv[2], sys.argv[3]
seconds = []
for job in plan_imaging(ms, fields, "both", ImagingConfig(), out):
    started = time.perf_counter()
    tasks.run_tclean(job.ms, job.output_dir, out + "/casa.log", **tclean_parameters(job))
    seconds.append(time.perf_counter() - started)
print("BENCH_STEPS " + json.dumps(seconds))
"""


def run_serial(script: Path, mms: str, fields: str, out: Path) -> dict:
    measured = run_tree_measured([sys.executable, str(script), mms, fields, str(out)])
    stdout = measured.pop("stdout")
    line = [x for x in stdout.splitlines() if x.startswith("BENCH_STEPS ")][-1]
    return {**measured, "tclean_seconds": sum(json.loads(line.split(" ", 1)[1]))}


def run_ours(mms: str, fields: str, out: Path) -> tuple[dict, dict]:
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(out / "run"), "image",
            mms, "--field", fields, "--out", str(out), "--n-workers", "2", "--json"]  # fmt: skip
    measured = run_tree_measured(argv)
    text = measured.pop("stdout")
    result = json.loads(text[text.index("{") :])
    measured["tclean_seconds"] = sum(i["tclean_seconds"] for i in result["images"])
    return measured, result


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--fields", default="8~15")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny preset, two fields, once")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.fields, args.repeat = "tiny", "2~3", 1

    from dsa110_contimg.simulate import preset, simulate_observation

    serial_runs, our_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-imaging-") as scratch:
        scratch = Path(scratch)
        ms = str(scratch / "obs.ms")
        simulate_observation(ms, preset(args.preset, n_field_sources=6))
        calibrate = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(scratch / "cal"),
                     "calibrate", ms, "--out", str(scratch), "--no-progress",
                     "--n-workers", "2"]  # fmt: skip
        run_tree_measured(calibrate)
        mms = str(scratch / "obs.cal.mms")
        script = scratch / "serial_child.py"
        script.write_text(SERIAL_CHILD)
        for repetition in range(args.repeat):
            # alternate which contender goes first, so neither always meets a warm cache
            order = ("serial", "ours") if repetition % 2 == 0 else ("ours", "serial")
            for contender in order:
                out = scratch / f"{contender}{repetition}"
                if contender == "serial":
                    serial_runs.append(run_serial(script, mms, args.fields, out))
                else:
                    measured, result = run_ours(mms, args.fields, out)
                    our_runs.append(measured)
    ratio = summarise_run_ratios(our_runs, serial_runs)
    serial, ours = summarise_runs(serial_runs), summarise_runs(our_runs)
    payload = {
        "benchmark": "imaging",
        "preset": args.preset,
        "repeat": args.repeat,
        "fields": args.fields,
        "images": len(result["images"]),
        "imsize": result["images"][0]["imsize"],
        "seconds": {"serial": serial["seconds"], "ours": ours["seconds"]},
        "cpu_seconds": {"serial": serial["cpu_seconds"], "ours": ours["cpu_seconds"]},
        "tclean_seconds": {"serial": serial["tclean_seconds"], "ours": ours["tclean_seconds"]},
        "peak_rss_gb": {"serial": serial["peak_rss_gb"], "ours": ours["peak_rss_gb"]},
        "ours_over_serial": ratio["median"],
        "ranges": {"ours_over_serial": ratio},
        "targets": {"ours_over_serial": 0.6},
    }
    print(
        f"imaging {payload['images']} images of {payload['imsize']} px ({args.preset}, "
        f"median of {args.repeat}): serial {_fmt(serial['seconds'])} s (cpu "
        f"{serial['cpu_seconds']['median']:.1f} s, tclean {serial['tclean_seconds']['median']:.1f}"
        f" s, peak {serial['peak_rss_gb']['median']:.2f} GB); Dask 2 workers "
        f"{_fmt(ours['seconds'])} s (cpu {ours['cpu_seconds']['median']:.1f} s, tclean "
        f"{ours['tclean_seconds']['median']:.1f} s summed over tasks, peak "
        f"{ours['peak_rss_gb']['median']:.2f} GB); ratio {_fmt(ratio, 2)}x (target <= 0.6x)"
    )
    if not args.quick:
        print(f"written {write_result(f'imaging-{args.preset}', payload)}")
    return payload


def _fmt(stats: dict, digits: int = 1) -> str:
    return f"{stats['median']:.{digits}f} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
