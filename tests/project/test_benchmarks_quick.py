"""Every benchmark script runs in quick mode, so none of them rots."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # builds or calibrates whole observations

BENCHMARKS = sorted((REPO_ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_quick(script):
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        cwd=script.parent,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio" in result.stdout or "x the" in result.stdout


def _run_all(*arguments, cwd):
    return subprocess.run(
        [sys.executable, "run_all.py", *arguments], capture_output=True, text=True, cwd=cwd,
        timeout=900,
    )  # fmt: skip


def test_run_all_gathers_results_a_markdown_table_and_the_readme_block(tmp_path):
    here = REPO_ROOT / "benchmarks"
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Project\n\n<!-- benchmarks:start -->\nold table\n<!-- benchmarks:end -->\n\nafter\n"
    )
    out = ["--out", str(tmp_path), "--readme", str(readme)]
    result = _run_all("--quick", "--only", "simulate", *out, cwd=here)
    assert result.returncode == 0, result.stderr[-3000:]
    # filed as an earlier day's: a second run with --only adds to the newest
    # results (copied to today's file) instead of starting an empty table
    (first,) = tmp_path.glob("*-quick.json")
    first.rename(tmp_path / "2000-01-01-quick.json")
    result = _run_all("--quick", "--only", "qa", *out, cwd=here)
    assert result.returncode == 0, result.stderr[-3000:]
    json_path = max(tmp_path.glob("*-quick.json"))
    import json

    gathered = json.loads(json_path.read_text())
    assert gathered["date"] > "2000-01-01"
    today = gathered["date"]
    assert set(gathered["benchmarks"]) == {"simulate", "qa"}
    assert gathered["machine"]["cores"] >= 1 and gathered["machine"]["casatools"]
    qa = gathered["benchmarks"]["qa"]
    assert qa["status"] == "ok" and qa["payload"]["benchmark"] == "qa"
    assert qa["arguments"] == ["--quick"]
    spread = qa["payload"]["ranges"]["qa_over_bare_read"]
    assert spread["min"] <= qa["payload"]["qa_over_bare_read"] <= spread["max"]
    table = json_path.with_suffix(".md").read_text()
    assert f"| qa | tiny x1, {today} | qa_over_bare_read |" in table
    assert f"| qa | tiny x1, {today} | ours seconds |" in table
    assert f"| simulate | tiny x1, {today} |" in table
    text = readme.read_text()
    assert "old table" not in text and table in text and text.endswith("after\n")


def test_run_all_refuses_an_unknown_benchmark_or_preset_name(tmp_path):
    here = REPO_ROOT / "benchmarks"
    for arguments in (["--only", "nosuch"], ["--preset", "nosuch=tiny"], ["--preset", "qa"]):
        result = _run_all(*arguments, "--out", str(tmp_path), cwd=here)
        assert result.returncode == 2, arguments
        assert "nosuch" in result.stderr or "NAME=PRESET" in result.stderr
    assert not list(tmp_path.iterdir())


def _import_run_all():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    return run_all


def test_a_failed_rerun_keeps_the_last_good_run_beside_the_failure():
    run_all = _import_run_all()
    payload = {"benchmark": "imaging", "preset": "small", "repeat": 3,
               "targets": {"ratio": 0.6}, "ratio": 0.64,
               "ranges": {"ratio": {"min": 0.59, "max": 0.65}}}  # fmt: skip
    good = {"status": "ok", "finished": "2026-11-22 05:36", "payload": payload}
    benchmarks = {"imaging": good}
    run_all.file_entry(benchmarks, "imaging", {"status": "failed", "finished": "2026-11-22 06:16"})
    run_all.file_entry(benchmarks, "imaging", {"status": "failed", "finished": "2026-11-22 07:00"})
    entry = benchmarks["imaging"]
    assert entry["status"] == "failed" and entry["finished"] == "2026-11-22 07:00"
    assert entry["last_good"] == good
    run_all.file_entry(benchmarks, "qa", {"status": "failed", "finished": "2026-11-22 07:00"})
    assert "last_good" not in benchmarks["qa"]
    machine = {"cpu": "x", "cores": 2, "memory_gb": 23.5, "python": "3.11",
               "casatools": "6.7", "dask": "2026.8.0"}  # fmt: skip
    table = run_all.markdown(
        {"date": "2026-11-22", "quick": False, "machine": machine, "benchmarks": benchmarks}
    )
    assert "| imaging | - | - | failed 2026-11-22 07:00 | - | - |" in table
    assert "| imaging | small x3, 2026-11-22 (last good run) | ratio | 0.64 [0.59-0.65] |" in table
    run_all.file_entry(benchmarks, "imaging", good)
    assert benchmarks["imaging"] == good


def test_reported_figures_are_table_rows_without_a_target():
    run_all = _import_run_all()
    payload = {"benchmark": "imaging", "preset": "small", "repeat": 3,
               "targets": {"ours_over_serial": 0.6}, "ours_over_serial": 0.62,
               "two_processes_over_serial": 0.57,
               "ranges": {"two_processes_over_serial": {"min": 0.55, "max": 0.6}},
               "reported": ["two_processes_over_serial", "not_measured"],
               "seconds": {"serial": {"median": 200.0, "min": 190.0, "max": 210.0}}}  # fmt: skip
    entry = {"status": "ok", "finished": "2026-11-22 11:00", "payload": payload}
    rows = run_all._rows("imaging", entry)
    data = "| imaging | small x3, 2026-11-22 |"
    assert rows == [
        f"{data} ours_over_serial | 0.62 | 0.6 | **no** |",
        f"{data} two_processes_over_serial | 0.57 [0.55-0.6] | - | - |",
        f"{data} serial seconds | 200.00 [190.00-210.00] | - | - |",
    ]
