"""Run every benchmark script and gather their figures into one file per day.

Each ``bench_*.py`` runs in its own process (as ``make bench`` does), compares
against its baseline in the same run and prints its JSON payload last; this
collects the payloads into ``benchmarks/results/<date>.json`` with the machine
they ran on, writes a Markdown table (``<date>.md``) of every figure against
its target (median of the repetitions, min-max in brackets) and puts the same
table into the README between its ``benchmarks:start``/``benchmarks:end``
markers. A run with ``--only`` adds its benchmarks to the newest results
file (today's or an earlier day's, copied to today's), so a table can be
measured in parts and each row says when it was measured; a benchmark that
fails there keeps its last successful run beside the failure. A benchmark
sized with ``--preset`` is filed as ``NAME-PRESET`` beside the default-sized one.

    python benchmarks/run_all.py [--quick] [--only qa phasing ...] [--repeat N]
                                 [--preset calibration=medium ...] [--readme PATH]
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
README = HERE.parent / "README.md"
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"


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


def script_arguments(quick: bool, repeat: int | None, preset: str | None) -> list[str]:
    if quick:
        return ["--quick"]
    return [
        *(["--repeat", str(repeat)] if repeat else []),
        *(["--preset", preset] if preset else []),
    ]


def run_script(script: Path, arguments: list[str]) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, script.name, *arguments], cwd=HERE, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    entry = {"arguments": arguments, "finished": time.strftime("%Y-%m-%d %H:%M"),
             "seconds": elapsed}  # fmt: skip
    if result.returncode != 0:
        return {**entry, "status": "failed", "error": result.stderr[-2000:]}
    summary = [line for line in result.stdout.splitlines() if line and line[0] not in '{} "']
    return {**entry, "status": "ok", "summary": summary,
            "payload": last_json_object(result.stdout)}  # fmt: skip


def parse_presets(pairs: list[str], known: set[str]) -> dict[str, str]:
    """``["calibration=medium"]`` -> ``{"calibration": "medium"}``, names checked."""
    presets = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not value or name not in known:
            raise ValueError(
                f"--preset takes NAME=PRESET with NAME one of {sorted(known)}: {pair!r}"
            )
        presets[name] = value
    return presets


def _value(payload: dict, key: str) -> tuple[float | None, dict | None]:
    """A target's measured value and its min-max over the repetitions (None if unknown).

    The payload's own key (a number, or a median/min/max record), or for
    ``peak_gb`` the peak memory of the ``ours`` contender.
    """
    value = payload.get(key)
    if key == "peak_gb":
        value = (payload.get("peak_rss_gb") or {}).get("ours")
    if isinstance(value, dict) and "median" in value:
        return value["median"], value
    if isinstance(value, int | float):
        return value, (payload.get("ranges") or {}).get(key)
    return None, None


def _meets(key: str, value: float, target: float) -> bool:
    higher_is_better = key.startswith("per_spw_script") or "speedup" in key
    return value >= target if higher_is_better else value <= target


def _data(payload: dict) -> str:
    """Which data a benchmark ran on and how often, e.g. ``full x3``."""
    size = payload.get("preset") or payload.get("base") or "-"
    return f"{size} x{payload.get('repeat', 1)}"


def newest_results(out: Path, quick: bool) -> Path | None:
    """The newest ``<date>[-quick].json`` in ``out`` of the same kind, or None."""
    pattern = "????-??-??-quick.json" if quick else "????-??-??.json"
    found = sorted(out.glob(pattern))
    return found[-1] if found else None


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Benchmarks gathered {results['date']} on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB (Python {m['python']}, casatools {m['casatools']}, dask "
        f"{m['dask']}){'; quick mode, tiny data' if results['quick'] else ''}. Each figure is "
        "the median of the repetitions (data: preset x repetitions), min-max in brackets; "
        "ratios are taken within each repetition; the data column says when each "
        "benchmark ran.",
        "",
        "| benchmark | data | figure | measured | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in results["benchmarks"].items():
        if entry["status"] == "ok":
            lines += _rows(name, entry)
            continue
        lines.append(f"| {name} | - | - | failed {entry['finished']} | - | - |")
        if entry.get("last_good"):
            lines += _rows(name, entry["last_good"], " (last good run)")
    return "\n".join(lines) + "\n"


def _rows(name: str, entry: dict, note: str = "") -> list[str]:
    """Table rows of one successful benchmark entry: targets, reported figures, timings."""
    rows = []
    payload = entry["payload"]
    data = f"{_data(payload)}, {entry['finished'][:10]}{note}"
    targets = payload.get("targets") or {}
    for key in [*targets, *(payload.get("reported") or [])]:
        value, spread = _value(payload, key)
        if value is None:
            continue
        shown = f"{value:.3g}" + (f" [{spread['min']:.3g}-{spread['max']:.3g}]" if spread else "")
        if key in targets:
            met = "yes" if _meets(key, value, targets[key]) else "**no**"
            rows.append(f"| {name} | {data} | {key} | {shown} | {targets[key]:g} | {met} |")
        else:
            rows.append(f"| {name} | {data} | {key} | {shown} | - | - |")
    for contender, stats in (payload.get("seconds") or {}).items():
        if isinstance(stats, dict) and "median" in stats:
            rows.append(
                f"| {name} | {data} | {contender} seconds | "
                f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}] | - | - |"
            )
    return rows


def file_entry(benchmarks: dict, key: str, entry: dict) -> None:
    """File a benchmark's new entry; a failed one keeps the last successful run beside it."""
    previous = benchmarks.get(key)
    if entry["status"] != "ok" and previous is not None:
        good = previous if previous["status"] == "ok" else previous.get("last_good")
        if good is not None:
            entry = {**entry, "last_good": good}
    benchmarks[key] = entry


def update_readme(path: Path, table: str) -> bool:
    """Replace the text between the README's benchmark markers; False if it has none."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")
    return True


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script on tiny data, once")
    parser.add_argument("--only", nargs="+", help="benchmark names, e.g. qa phasing")
    parser.add_argument("--repeat", type=int, help="repetitions for every script")
    parser.add_argument("--preset", nargs="+", default=[], metavar="NAME=PRESET",
                        help="data size for one benchmark, e.g. calibration=medium")  # fmt: skip
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results directory")
    parser.add_argument("--readme", help="README whose benchmark table to replace "
                        "(default: the project's, except in quick mode)")  # fmt: skip
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    names = {s.stem.removeprefix("bench_") for s in scripts}
    try:
        presets = parse_presets(args.preset, names)
    except ValueError as error:
        parser.error(str(error))
    if args.quick:
        presets = {}  # quick mode runs everything on tiny data
    if args.only:
        wanted = {n.removeprefix("bench_") for n in args.only}
        if wanted - names:
            parser.error(f"unknown benchmarks {sorted(wanted - names)}; have {sorted(names)}")
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d")
    json_path = out / f"{date}{'-quick' if args.quick else ''}.json"
    results = {"date": date, "quick": args.quick, "machine": machine(), "benchmarks": {}}
    newest = newest_results(out, args.quick)
    if args.only and newest is not None:  # add to the newest results
        results["benchmarks"] = json.loads(newest.read_text())["benchmarks"]
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        arguments = script_arguments(args.quick, args.repeat, presets.get(name))
        print(f"running {script.name} {' '.join(arguments)} ...", flush=True)
        entry = run_script(script, arguments)
        # a benchmark sized by --preset keeps its own row beside the default-sized one
        key = f"{name}-{presets[name]}" if name in presets else name
        file_entry(results["benchmarks"], key, entry)
        for line in entry.get("summary", []):
            print(f"  {line}")
        if entry["status"] != "ok":
            print(f"  FAILED: {entry['error'][-500:]}")
        json_path.write_text(json.dumps(results, indent=2))  # kept after every script
    table = markdown(results)
    json_path.with_suffix(".md").write_text(table)
    print(table)
    print(f"written {json_path} and {json_path.with_suffix('.md')}")
    readme = Path(args.readme) if args.readme else (None if args.quick else README)
    if readme is not None:
        if update_readme(readme, table):
            print(f"table written into {readme}")
        else:
            print(f"{readme} has no {README_START} ... {README_END} block: not updated")
    return results


if __name__ == "__main__":
    failed = [n for n, r in main()["benchmarks"].items() if r["status"] != "ok"]
    sys.exit(1 if failed else 0)
