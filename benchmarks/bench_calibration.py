"""Calibration of one synthetic observation: this project on Dask against CASA alone.

Same recipe and parameters for every contender (rephase, flag, model,
pre-bandpass phase, bandpass, gains at inf and 60 s, apply):
  (a) serial: the CASA tasks called one after another in one process on the whole MS;
  (b) MPI CASA: casampi under ``mpirun -n 3`` (a client and 2 servers) on a per-SPW
      Multi-MS; CASA parallelises flagdata and applycal over sub-MSs, solves run
      in the client;
  (c) this project with ``--engine casa``, 2 single-threaded Dask worker processes, a
      task per (SPW, step);
  (d) as (c) with ``--fast`` (4 channels averaged before solving);
  (e) as (c) with ``--engine native`` (the default: this project's kernels, CASA
      tables out);
  (f) QuartiCal (``make bench-deps`` installs it into ``.venv-quartical``: it pins its
      own dask) on the calibrator fields of the rephased, modelled MS, made one field
      so its intervals combine fields as CASA's: phase gains over 5 integrations chained
      with a per-channel complex bandpass, and its apply.
Each repetition runs all of them, in a rotating order. Reported: medians with min
and max of wall time, CPU time and peak memory of each process tree and of the
per-repetition ratios, the median split across steps, and how far the
solutions of (c), (d) and (e) are from (a) and from the simulation truth, and
where (e) spends its solve time (read and accumulate, solve, write). Targets on
2 cores: (c) <= 0.6x (a) and faster than (b); (e) <= 0.25x (f) and <= 0.05x (a).

    python benchmarks/bench_calibration.py [--preset full] [--repeat 3] [--quick] [--no-mpi]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import run_tree_measured, summarise_run_ratios, summarise_runs, write_result

RECIPE_CHILD = """
import json, sys
from dsa110_contimg.calibration.config import resolve_config
from dsa110_contimg.calibration.pipeline import plan_calibration
from dsa110_contimg.calibration.serial import run_serial_recipe
from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields
from dsa110_contimg.sky.calibrators import lookup_calibrator

ms, out, multi_ms = sys.argv[1], sys.argv[2], sys.argv[3] == "mms"
cal = lookup_calibrator("0834+555")
fields = choose_fields(ms, cal, FieldChoice(auto=True, min_response=0.3))
plan = plan_calibration([ms], cal, {ms: fields}, "103", resolve_config(), out)
result = run_serial_recipe(plan.observations[0], cal, plan.config, out, out, multi_ms=multi_ms)
print("BENCH_STEPS " + json.dumps(result))
if multi_ms:
    from casampi.MPICommandClient import MPICommandClient
    MPICommandClient().stop_services(force_command_request_interruption=True)
"""


def _steps(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("BENCH_STEPS ")][-1]
    return json.loads(line.split(" ", 1)[1])


def run_serial(ms, out, script) -> dict:
    measured = run_tree_measured([sys.executable, str(script), ms, str(out), "ms"])
    result = _steps(measured.pop("stdout"))
    return {**measured, "steps": result["seconds"], "tables": result["tables"], "ms": result["ms"]}


def mpi_available() -> bool:
    """MPI CASA needs mpirun (Debian openmpi-bin) and casampi (`make bench-deps`)."""
    import importlib.util

    found = shutil.which("mpirun") is not None and importlib.util.find_spec("casampi") is not None
    if not found:
        print("MPI CASA not installed (make bench-deps): contender (b) skipped")
    return found


def run_mpi(ms, out, script) -> dict:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise RuntimeError("mpirun not found: install Debian openmpi-bin (make bench-deps)")
    argv = [mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "3",
            sys.executable, str(script), ms, str(out), "mms"]  # fmt: skip
    measured = run_tree_measured(argv)
    result = _steps(measured.pop("stdout"))
    return {**measured, "steps": result["seconds"], "tables": result["tables"]}


QUARTICAL = Path(__file__).resolve().parents[1] / ".venv-quartical" / "bin" / "goquartical"

QUARTICAL_CONFIG = """
input_ms:
  path: {ms}
  data_column: DATA
  time_chunk: '0'
  freq_chunk: 0
  group_by: [FIELD_ID, DATA_DESC_ID]
input_model:
  recipe: MODEL_DATA
solver:
  terms: [G, B]
  iter_recipe: [25, 25]
  threads: 1
output:
  gain_directory: {out}/gains.qc
  log_directory: {out}/logs.qc
  overwrite: true
  products: [corrected_data]
  columns: [CORRECTED_DATA]
dask:
  threads: 2
G:
  type: phase
  time_interval: 5
  freq_interval: 0
B:
  type: complex
  time_interval: 0
  freq_interval: 1
"""


def quartical_available() -> bool:
    if not QUARTICAL.exists():
        print("QuartiCal not installed (make bench-deps): contender (f) skipped")
    return QUARTICAL.exists()


def prepare_for_quartical(ms, scratch: Path) -> tuple[str, list[int]]:
    """The solve fields, rephased, with the calibrator's MODEL_DATA, as their own MS (made
    once, not timed), and those fields."""
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    cal = lookup_calibrator("0834+555")
    fields = choose_fields(ms, cal, FieldChoice(auto=True, min_response=0.3))
    rephased = scratch / "rephased.ms"
    argv = [sys.executable, "-m", "dsa110_contimg", "rephase", ms, "--calibrator", cal.name,
            "--field", ",".join(map(str, fields)), "--out", str(rephased)]  # fmt: skip
    run_tree_measured(argv)
    from dsa110_contimg.casa.tasks import run_split

    solve_fields = scratch / "solve_fields.ms"
    run_split(str(rephased), str(solve_fields), field=",".join(map(str, fields)))
    run_tree_measured([sys.executable, "-m", "dsa110_contimg", "write-model", str(solve_fields),
                       "--calibrator", cal.name])  # fmt: skip
    # Every solve field is phased to the calibrator now: one field for QuartiCal, which
    # solves each field on its own, so its intervals combine fields as CASA's do.
    from casacore.tables import table

    with table(str(solve_fields), readonly=False, ack=False) as main:
        main.putcol("FIELD_ID", np.zeros(main.nrows(), np.int32))
    return str(solve_fields), fields


def run_quartical(prepared: tuple[str, list[int]], out: Path) -> dict:
    ms, fields = prepared
    out.mkdir(parents=True, exist_ok=True)
    config = out / "quartical.yaml"
    config.write_text(QUARTICAL_CONFIG.format(ms=ms, out=out))
    measured = run_tree_measured([str(QUARTICAL), str(config)])
    measured.pop("stdout")
    return {**measured, "steps": {"solve_and_apply": measured["seconds"]}, "tables": {}}


def native_split(obs: dict) -> dict:
    """Where the native solves spent their time, summed over steps and SPWs (task seconds),
    and the CASA-free flag and apply steps beside them."""
    keys = ("read_seconds", "accumulate_seconds", "solve_seconds", "write_seconds")
    split = {k: float(sum(v.get(k, 0.0) for v in obs["solutions"].values())) for k in keys}
    steps = obs["step_seconds"]
    split["solve_steps_seconds"] = float(sum(steps.get(s, 0.0) for s in SOLVE_STEPS))
    for step in ("prepare", "flag", "model", "apply"):
        split[f"{step}_step_seconds"] = float(steps.get(step, 0.0))
    return split


SOLVE_STEPS = ("prebp", "bpcal", "gpcal", "2gcal")


def bare_read_seconds(mms: str) -> float:
    """One thread reading every SPW's columns the native solves use (a bare dask-ms read)."""
    import time

    import dask

    from dsa110_contimg.ms import reads

    started = time.perf_counter()
    for sub_ms in sorted((Path(mms) / "SUBMSS").iterdir()):
        weight = "WEIGHT_SPECTRUM" if "WEIGHT_SPECTRUM" in reads.main_columns(sub_ms) else "WEIGHT"
        columns = ["DATA", "MODEL_DATA", "FLAG", weight, "ANTENNA1", "ANTENNA2", "TIME",
                   "FIELD_ID", "SCAN_NUMBER", "FLAG_ROW", "UVW"]  # fmt: skip
        datasets = reads.read_visibility_datasets(sub_ms, columns, group_cols=["DATA_DESC_ID"])
        dask.compute([ds[c].data for ds in datasets for c in columns], scheduler="synchronous")
    return time.perf_counter() - started


def equality_vs_serial(serial: dict, native: dict) -> dict:
    """The issue's figures of the native engine against serial CASA: per table the median
    amplitude and phase differences and the fraction of solutions flagged by one only;
    CORRECTED_DATA's median relative difference where serial CASA kept the data."""
    from casacore.tables import table

    out = {}
    keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
    for step in ("bpcal", "2gcal"):
        with table(serial["tables"][step], ack=False) as a, table(native["tables"][step],
                                                                   ack=False) as b:  # fmt: skip
            sa, sb = a.sort(keys), b.sort(keys)
            fa, fb = sa.getcol("FLAG"), sb.getcol("FLAG")
            good = ~fa & ~fb
            ratio = sb.getcol("CPARAM")[good] / sa.getcol("CPARAM")[good]
        out[step] = {
            "amp_difference_median": float(np.median(np.abs(np.abs(ratio) - 1))),
            "phase_difference_median_deg": float(np.degrees(np.median(np.abs(np.angle(ratio))))),
            "flag_disagreement": float((fa != fb).mean()),
        }
    order = "TIME, ANTENNA1, ANTENNA2"
    differences, flag_disagreement = [], []
    with table(serial["ms"], ack=False) as a, table(native["mms"], ack=False) as b:
        for ddid in sorted(set(a.getcol("DATA_DESC_ID"))):
            query = f"DATA_DESC_ID == {ddid}"
            with a.query(query, sortlist=order) as sa, b.query(query, sortlist=order) as sb:
                flags = sa.getcol("FLAG")
                flag_disagreement.append((flags != sb.getcol("FLAG")).mean())
                ca, cb = sa.getcol("CORRECTED_DATA")[~flags], sb.getcol("CORRECTED_DATA")[~flags]
                differences.append(np.median(np.abs(cb - ca) / np.abs(ca)))
    out["corrected_relative_difference_median"] = float(np.median(differences))
    out["corrected_flag_disagreement"] = float(np.mean(flag_disagreement))
    return out


def run_ours(ms, out, extra=()) -> dict:
    argv = [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(out / "run"),
            "calibrate", ms, "--out", str(out), "--n-workers", "2", "--json",
            "--no-progress", *extra]  # fmt: skip
    measured = run_tree_measured(argv)
    text = measured.pop("stdout")
    summary = json.loads(text[text.index("{") :])
    obs = summary["observations"][0]
    assert summary["status"] == "ok", obs["failed"]
    return {
        **measured,
        "task_seconds": obs["step_seconds"],
        "graph_wall_seconds": summary["wall_seconds"],
        "tables": obs["merged_tables"],
        "native_split": native_split(obs) if "native" in extra else None,
        "mms": obs["output_mms"],
    }


def table_difference(a, b) -> float:
    """Largest |a - b| over unflagged solutions of two B or G tables (rows matched)."""
    from casacore.tables import table

    keys = "SPECTRAL_WINDOW_ID, TIME, ANTENNA1"
    with table(a, ack=False) as ta, table(b, ack=False) as tb:
        sa, sb = ta.sort(keys), tb.sort(keys)
        va, vb = sa.getcol("CPARAM"), sb.getcol("CPARAM")
        flags = sa.getcol("FLAG") | sb.getcol("FLAG")
    return float(np.abs(va - vb)[~flags].max())


def bandpass_truth_error(ms, bpcal) -> dict:
    """Median amplitude and phase error of a bandpass table against the simulation truth."""
    from casacore.tables import table

    from dsa110_contimg.simulate.truth import load_truth

    truth = load_truth(ms)
    with table(bpcal, ack=False) as t:
        ant, spw = t.getcol("ANTENNA1"), t.getcol("SPECTRAL_WINDOW_ID")
        refant = t.getcol("ANTENNA2")[0]
        solution, flag = t.getcol("CPARAM"), t.getcol("FLAG")
        n_sol_chan = solution.shape[1]
    bandpass = truth.bandpass
    if n_sol_chan != bandpass.shape[2]:  # averaged solve: compare with the averaged truth
        factor = bandpass.shape[2] // n_sol_chan
        bandpass = bandpass.reshape(*bandpass.shape[:2], n_sol_chan, factor, -1).mean(axis=3)
    expected = bandpass[ant, spw] * np.exp(-1j * np.angle(bandpass[refant, spw]))
    ratio = np.where(~flag & (np.abs(expected) > 0), solution / expected, np.nan)
    ratio = ratio / np.nanmean(ratio, axis=1, keepdims=True)
    return {
        "amp_error_median": float(np.nanmedian(np.abs(np.abs(ratio) - 1))),
        "phase_error_median_deg": float(np.nanmedian(np.degrees(np.abs(np.angle(ratio))))),
        "kept_fraction": float(1 - flag.mean()),
    }


CONTENDERS = ("serial", "mpi", "ours", "ours_fast", "native", "quartical")
EXTRA = {"ours": ["--engine", "casa"], "ours_fast": ["--fast", "--engine", "casa"],
         "native": ["--engine", "native"]}  # fmt: skip


def run_contender(name: str, ms: str, out: Path, script: Path, prepared=None) -> dict:
    if name == "serial":
        return run_serial(ms, out, script)
    if name == "mpi":
        return run_mpi(ms, out, script)
    if name == "quartical":
        return run_quartical(prepared, out)
    return run_ours(ms, out, EXTRA[name])


def median_split(runs: list[dict]) -> dict:
    """Per-step seconds, median over the repetitions."""
    split = [r.get("steps") or r.get("task_seconds") for r in runs]
    return {step: float(np.median([s[step] for s in split])) for step in split[0]}


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small preset, once")
    parser.add_argument("--no-mpi", action="store_true", help="skip the MPI CASA contender")
    parser.add_argument("--no-quartical", action="store_true", help="skip QuartiCal")
    parser.add_argument("--only", default="", help=f"comma-separated contenders of {CONTENDERS} "
                        "(without serial, nothing is compared with serial CASA)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.repeat = "small", 1

    from dsa110_contimg.simulate import preset, simulate_observation

    mpi_ok = not args.no_mpi and mpi_available()
    quartical_ok = not args.no_quartical and quartical_available()
    skipped = {name for name, ok in (("mpi", mpi_ok), ("quartical", quartical_ok)) if not ok}
    wanted = {c.strip() for c in args.only.split(",") if c.strip()}
    contenders = [c for c in CONTENDERS if c not in skipped and (not args.only or c in wanted)]
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as scratch:
        scratch = Path(scratch)
        ms = str(scratch / "bench.ms")
        simulate_observation(ms, preset(args.preset))
        script = scratch / "recipe_child.py"
        script.write_text(RECIPE_CHILD)
        prepared = prepare_for_quartical(ms, scratch) if quartical_ok else None
        for repetition in range(args.repeat):
            # rotate the order, so no contender always runs first (cold cache) or last
            shift = repetition % len(contenders)
            for name in contenders[shift:] + contenders[:shift]:
                out = scratch / f"{name}{repetition}"
                runs[name].append(run_contender(name, ms, out, script, prepared))
            if repetition == 0:  # the solutions do not change between repetitions
                first = {name: r[0]["tables"] for name, r in runs.items()}
                ours = [n for n in ("ours", "native") if n in runs and "serial" in runs]
                agreement = {
                    f"{step} {name}": table_difference(first["serial"][step], first[name][step])
                    for step in ("bpcal", "2gcal")
                    for name in ours
                }
                truth = {
                    name: bandpass_truth_error(ms, first[name]["bpcal"])
                    for name in ("serial", "ours", "ours_fast", "native")
                    if name in runs
                }
                equality = bare_read = None
                if "native" in runs:
                    if "serial" in runs:
                        equality = equality_vs_serial(runs["serial"][0], runs["native"][0])
                    bare_read = bare_read_seconds(runs["native"][0]["mms"])
            for name in contenders:
                shutil.rmtree(scratch / f"{name}{repetition}", ignore_errors=True)
    pairs = {
        "ours_over_serial": ("ours", "serial"),
        "fast_over_ours": ("ours_fast", "ours"),
        "native_over_serial": ("native", "serial"),
        "native_over_ours": ("native", "ours"),
        "native_over_quartical": ("native", "quartical"),
        "ours_over_mpi": ("ours", "mpi"),
    }
    ratios = {
        key: summarise_run_ratios(runs[a], runs[b])
        for key, (a, b) in pairs.items()
        if a in runs and b in runs
    }
    summaries = {name: summarise_runs(rs) for name, rs in runs.items()}
    payload = {
        "benchmark": "calibration",
        "preset": args.preset,
        "repeat": args.repeat,
        "cores": os.cpu_count(),
        "runs": {
            name: {**stats, "split_seconds": median_split(runs[name])}
            for name, stats in summaries.items()
        },
        "seconds": {name: stats["seconds"] for name, stats in summaries.items()},
        **{key: ratios[key]["median"] if key in ratios else None for key in pairs},
        "native_split_seconds": {
            k: float(np.median([r["native_split"][k] for r in runs["native"]]))
            for k in runs["native"][0]["native_split"]
        }
        if "native" in runs
        else None,
        "native_equality_vs_serial": equality,
        "bare_read_seconds": bare_read,
        "ranges": ratios,
        "max_abs_difference_vs_serial": agreement,
        "bandpass_vs_truth": truth,
        "targets": {
            "ours_over_serial": 0.6,
            "ours_over_mpi": 1.0,
            "native_over_quartical": 0.25,
            "native_over_serial": 0.05,
            "native_solve_steps_over_bare_read": 5.0,
        },  # fmt: skip
    }
    if "native" in runs:
        payload["native_solve_steps_over_bare_read"] = (
            payload["native_split_seconds"]["solve_steps_seconds"] / bare_read
        )
    base = summaries["serial"]["seconds"]["median"] if "serial" in summaries else None
    for name, stats in summaries.items():
        print(
            f"{name:10s} wall {_fmt(stats['seconds'])} s  "
            f"cpu {stats['cpu_seconds']['median']:.1f} s  "
            f"peak {stats['peak_rss_gb']['median']:.2f} GB"
            + (f"  ratio to serial {stats['seconds']['median'] / base:.2f}x" if base else "")
        )
        split = payload["runs"][name]["split_seconds"]
        print("           " + ", ".join(f"{k} {v:.1f}" for k, v in split.items()))
    for key, stats in ratios.items():
        print(f"{key} {_fmt(stats, 2)} (median [min-max] of {args.repeat})")
    print(f"solutions: max |ours - serial| {agreement}")
    if "native" in runs:
        print(f"native task seconds: {payload['native_split_seconds']}")
        print(f"native solve steps over a bare read ({bare_read:.1f} s): "
              f"{payload['native_solve_steps_over_bare_read']:.2f}x")  # fmt: skip
        print(f"native against serial CASA: {equality}")
    for name, errors in truth.items():
        print(f"bandpass vs truth, {name}: {errors}")
    if not args.quick:
        print(f"written {write_result(f'calibration-{args.preset}', payload)}")
    return payload


def _fmt(stats: dict, digits: int = 1) -> str:
    return f"{stats['median']:.{digits}f} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
