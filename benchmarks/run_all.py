"""Run every benchmark script and gather their figures into one file per day.

Each ``bench_*.py`` runs in its own process (as ``make bench`` does), compares
against its baseline in the same run and prints its JSON payload last; this
collects the payloads into ``benchmarks/results/<date>.json`` with the machine
they ran on, and writes a Markdown table (``<date>.md``) of every ratio against
its target, for the README.

    python benchmarks/run_all.py [--quick] [--only qa phasing ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS_DIR = HERE / "results"
# Scripts that take --repeat (the others run their contenders once: see their docstrings).
REPEATABLE = {"bench_simulate", "bench_phasing", "bench_qa"}


def machine() -> dict:
    import psutil

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "casatools": version("casatools"),
        "dask": version("dask"),
        "platform": platform.platform(),
    }


def last_json_object(stdout: str) -> dict:
    """The JSON payload a benchmark prints last (a block starting with '{' on its own line)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    if not starts:
        raise ValueError("no JSON payload in the benchmark's output")
    return json.loads("\n".join(lines[starts[-1] :]))


def run_script(script: Path, quick: bool, repeat: int | None) -> dict:
    argv = [sys.executable, script.name]
    if quick:
        argv.append("--quick")
    if repeat and script.stem in REPEATABLE and not quick:
        argv += ["--repeat", str(repeat)]
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        return {"status": "failed", "seconds": elapsed, "error": result.stderr[-2000:]}
    summary = [line for line in result.stdout.splitlines() if line and line[0] not in '{} "']
    return {"status": "ok", "seconds": elapsed, "summary": summary,
            "payload": last_json_object(result.stdout)}  # fmt: skip


def _value(payload: dict, key: str):
    """A target's measured value: the payload's own key, or the ours/peak figures."""
    if key in payload and not isinstance(payload[key], dict):
        return payload[key]
    if key == "peak_gb":
        peak = payload.get("peak_rss_gb", {})
        ours = peak.get("ours") if isinstance(peak, dict) else None
        return ours.get("median") if isinstance(ours, dict) else None
    return None


def _meets(key: str, value: float, target: float) -> bool:
    higher_is_better = key.startswith("per_spw_script") or "speedup" in key
    return value >= target if higher_is_better else value <= target


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Benchmarks of {results['date']} on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB (Python {m['python']}, casatools {m['casatools']}); "
        f"{'quick mode, tiny data' if results['quick'] else 'full-size data'}.",
        "",
        "| benchmark | figure | measured | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in results["benchmarks"].items():
        if entry["status"] != "ok":
            lines.append(f"| {name} | - | failed | - | - |")
            continue
        payload = entry["payload"]
        targets = payload.get("targets") or {}
        for key, target in targets.items():
            value = _value(payload, key)
            if value is None:
                continue
            met = "yes" if _meets(key, value, target) else "**no**"
            lines.append(f"| {name} | {key} | {value:.3g} | {target:g} | {met} |")
        for contender, stats in (payload.get("seconds") or {}).items():
            if isinstance(stats, dict) and "median" in stats:
                lines.append(
                    f"| {name} | {contender} seconds (median [min-max]) | "
                    f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}] | - | - |"
                )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script on tiny data, once")
    parser.add_argument("--only", nargs="+", help="benchmark names, e.g. qa phasing")
    parser.add_argument("--repeat", type=int, help="repetitions for the scripts that take it")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {f"bench_{n.removeprefix('bench_')}" for n in args.only}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            parser.error(f"unknown benchmarks {sorted(unknown)}; have {[s.stem for s in scripts]}")
        scripts = [s for s in scripts if s.stem in wanted]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "machine": machine(),
        "benchmarks": {},
    }
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"running {script.name} ...", flush=True)
        results["benchmarks"][name] = run_script(script, args.quick, args.repeat)
        for line in results["benchmarks"][name].get("summary", []):
            print(f"  {line}")
        if results["benchmarks"][name]["status"] != "ok":
            print(f"  FAILED: {results['benchmarks'][name]['error'][-500:]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    json_path = out / f"{results['date']}{suffix}.json"
    json_path.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / f"{results['date']}{suffix}.md").write_text(table)
    print(table)
    print(f"written {json_path} and {json_path.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    failed = [n for n, r in main()["benchmarks"].items() if r["status"] != "ok"]
    sys.exit(1 if failed else 0)
