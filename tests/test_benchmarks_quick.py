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
