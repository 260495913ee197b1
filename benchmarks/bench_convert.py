"""Time converting one observation's 16 UVH5 subband files into a Measurement Set.

Contenders, measured in the same repetitions (each a fresh process tree):
``ours`` (``contimg convert`` with 2 local workers: a read-and-phase task per
file, one write), ``production`` (the production converter's approach done
serially: pyuvdata read of every subband, ``+=``, each integration phased to
its meridian, ``write_ms``) and ``plain_read`` (h5py reads of every file's
visibilities, flags and sample counts: what reading the bytes costs).
Reported: seconds, CPU seconds, peak memory of the whole process tree, MB/s
of the files, and ours / production. Targets (full size, 2 workers): at most
0.6x production and under 4 GB.

    python benchmarks/bench_convert.py [--preset full] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from harness import (
    parse_args,
    run_tree_measured,
    summarise_run_ratios,
    summarise_runs,
    write_result,
)

PRODUCTION = """
import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from dsa110_contimg.casa_env import offline_observatory_sites
offline_observatory_sites()
from pyuvdata import UVData
from dsa110_contimg.raw.uvh5 import field_name, meridian_ra_rad, pointing_dec_rad
files, out = sys.argv[1:-1], sys.argv[-1]
options = dict(run_check=False, check_extra=False, run_check_acceptability=False,
               strict_uvw_antpos_check=False)
uv = None
for f in files:
    one = UVData.from_file(f, file_type="uvh5", **options)
    one.uvw_array = one.uvw_array.astype(np.float64)
    uv = one if uv is None else uv.__iadd__(one, run_check=False, check_extra=False,
                                            run_check_acceptability=False)
uv.set_uvws_from_antenna_positions()
dec, lon = pointing_dec_rad(uv), uv.telescope.location.lon.deg
for i, t in enumerate(np.unique(uv.time_array)):
    uv.phase(lon=float(meridian_ra_rad(t, lon)), lat=dec, epoch="J2000", phase_frame="fk5",
             cat_name=field_name(i), select_mask=uv.time_array == t)
uv._clear_unused_phase_centers()
uv.write_ms(out, run_check=False)
"""

PLAIN_READ = """
import sys, h5py
total = 0
for f in sys.argv[1:]:
    with h5py.File(f, "r") as h:
        for name in ("visdata", "flags", "nsamples"):
            total += h["Data"][name][()].nbytes
print(total)
"""


def _simulate(folder: Path, preset: str) -> list[str]:
    """The observation's 16 subband files (simulated in a child process: its memory goes)."""
    run_tree_measured([sys.executable, "-m", "dsa110_contimg", "--log-dir",
                       str(folder.parent / "simulate-run"), "simulate", str(folder),
                       "--format", "uvh5", "--preset", preset, "--n-spw", "16"])  # fmt: skip
    return [str(p) for p in sorted(folder.glob("*_sb*.hdf5"))]


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    runs = {"ours": [], "production": [], "plain_read": []}
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as scratch:
        scratch = Path(scratch)
        files = _simulate(scratch / "raw", args.preset)
        file_bytes = sum(Path(f).stat().st_size for f in files)
        for _ in range(args.repeat):
            for name in ("ms_ours", "ms_production"):
                shutil.rmtree(scratch / name, ignore_errors=True)
            runs["plain_read"].append(run_tree_measured([sys.executable, "-c", PLAIN_READ, *files]))
            runs["production"].append(run_tree_measured(
                [sys.executable, "-c", PRODUCTION, *files, str(scratch / "ms_production.ms")]
            ))  # fmt: skip
            runs["ours"].append(run_tree_measured(
                [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(scratch / "run"),
                 "convert", str(scratch / "raw"), "--out", str(scratch / "ms_ours"),
                 "--n-workers", "2"]
            ))  # fmt: skip
    for contender in runs.values():
        for run in contender:
            run.pop("stdout")
    stats = {name: summarise_runs(r) for name, r in runs.items()}
    ratio = summarise_run_ratios(runs["ours"], runs["production"])
    mb = file_bytes / 1e6
    payload = {
        "benchmark": "convert",
        "preset": args.preset,
        "repeat": args.repeat,
        "subband_files": len(files),
        "file_megabytes": mb,
        "seconds": {name: s["seconds"] for name, s in stats.items()},
        "stats": stats,
        "ours_over_production": ratio,
        "megabytes_per_second": {name: mb / s["seconds"]["median"] for name, s in stats.items()},
        "peak_rss_gb": stats["ours"]["peak_rss_gb"],
        "targets": {"ours_over_production": 0.6, "peak_rss_gb": 4.0},
    }
    for name, s in stats.items():
        print(
            f"convert[{args.preset}] {name:10s}: {s['seconds']['median']:7.1f} s "
            f"(CPU {s['cpu_seconds']['median']:.1f} s, peak {s['peak_rss_gb']['median']:.2f} GB, "
            f"{mb / s['seconds']['median']:.0f} MB/s of {mb:.0f} MB)"
        )
    print(
        f"convert[{args.preset}]: ours/production ratio {ratio['median']:.3f}x "
        f"[{ratio['min']:.3f}-{ratio['max']:.3f}] (target <= 0.6x)"
    )
    if not args.quick:
        print(f"written {write_result(f'convert-{args.preset}', payload)}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
