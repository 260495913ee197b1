"""Imaging DATA and CORRECTED of several fields: Dask (2 workers) against serial tclean.

Both contenders make the same images with the same tclean parameters (the
project's DSA-110 defaults) from one calibrated synthetic observation:
  (a) serial: the tclean calls one after another in one process;
  (b) this project: one Dask task per (field, column) on 2 single-threaded workers.
Reported: wall time, CPU time and peak memory (process tree), and the ratio
(target <= 0.6x on 2 cores).

    python benchmarks/bench_imaging.py [--preset small] [--fields 8~11] [--quick]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness import run_tree_measured, write_result

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


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--fields", default="8~15")
    parser.add_argument("--quick", action="store_true", help="tiny preset, two fields")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.fields = "tiny", "2~3"

    from dsa110_contimg.simulate import preset, simulate_observation

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
        serial = run_tree_measured(
            [sys.executable, str(script), mms, args.fields, str(scratch / "serial")]
        )
        task_seconds = json.loads(
            [x for x in serial.pop("stdout").splitlines() if x.startswith("BENCH_STEPS ")][-1][12:]
        )
        ours = run_tree_measured(
            [
                sys.executable,
                "-m",
                "dsa110_contimg",
                "--log-dir",
                str(scratch / "img"),
                "image",
                mms,
                "--field",
                args.fields,
                "--out",
                str(scratch / "ours"),
                "--n-workers",
                "2",
                "--json",
            ]  # fmt: skip
        )
        text = ours.pop("stdout")
        result = json.loads(text[text.index("{") :])
    ratio = ours["seconds"] / serial["seconds"]
    payload = {
        "benchmark": "imaging",
        "preset": args.preset,
        "fields": args.fields,
        "images": len(task_seconds),
        "imsize": result["images"][0]["imsize"],
        "serial": serial,
        "serial_tclean_seconds": task_seconds,
        "ours": ours,
        "ours_task_seconds": [i["tclean_seconds"] for i in result["images"]],
        "ours_over_serial": ratio,
        "target": 0.6,
    }
    print(
        f"imaging {len(task_seconds)} images of {payload['imsize']} px ({args.preset}): "
        f"serial {serial['seconds']:.1f} s (cpu {serial['cpu_seconds']:.1f} s, peak "
        f"{serial['peak_rss_gb']:.2f} GB); Dask 2 workers {ours['seconds']:.1f} s (cpu "
        f"{ours['cpu_seconds']:.1f} s, peak {ours['peak_rss_gb']:.2f} GB); ratio {ratio:.2f}x"
    )
    if not args.quick:
        print(f"written {write_result(f'imaging-{args.preset}', payload)}")
    return payload


if __name__ == "__main__":
    main()
