"""Every benchmark script runs in quick mode, so none of them rots."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"))


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


def test_run_all_gathers_results_and_a_markdown_table(tmp_path):
    here = Path(__file__).parents[1] / "benchmarks"
    result = subprocess.run(
        [sys.executable, "run_all.py", "--quick", "--only", "simulate", "qa", "--out",
         str(tmp_path)],
        capture_output=True, text=True, cwd=here, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (json_path,) = tmp_path.glob("*-quick.json")
    import json

    gathered = json.loads(json_path.read_text())
    assert set(gathered["benchmarks"]) == {"simulate", "qa"}
    assert gathered["machine"]["cores"] >= 1 and gathered["machine"]["casatools"]
    qa = gathered["benchmarks"]["qa"]
    assert qa["status"] == "ok" and qa["payload"]["benchmark"] == "qa"
    table = json_path.with_suffix(".md").read_text()
    assert "| qa | qa_over_bare_read |" in table
    assert "| qa | ours seconds (median [min-max]) |" in table
