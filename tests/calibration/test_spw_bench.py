"""`contimg bench-spw`: selections calibrated concurrently, compared, one recommended."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # builds or calibrates whole observations


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dsa110_contimg", *map(str, args)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_two_selections_give_the_documented_json(corrupted_small, tmp_path):
    result = run_cli(
        "--log-dir", tmp_path / "run", "bench-spw", corrupted_small, "--selections", "1", "0~3",
        "--auto-fields", "--out", tmp_path / "out", "--n-workers", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recommendation:" in result.stdout
    folder = tmp_path / "out" / f"{corrupted_small.stem}_spw_bench"
    bench = json.loads((folder / "spw_bench.json").read_text())
    assert bench["schema"] == "dsa110_contimg.spw_bench" and bench["version"] == 1
    one, four = bench["selections"]
    assert one["spws"] == [1] and four["spws"] == [0, 1, 2, 3]
    assert one["calibrated_spws"] == [1] and four["calibrated_spws"] == [0, 1, 2, 3]
    # more SPWs: more solutions, more bytes, more CPU
    assert four["quality"]["n_solutions"] > 3 * one["quality"]["n_solutions"]
    assert four["cost"]["visibility_bytes"] == 4 * one["cost"]["visibility_bytes"]
    assert four["cost"]["task_cpu_seconds"] > one["cost"]["task_cpu_seconds"]
    assert four["cost"]["task_seconds"] > one["cost"]["task_seconds"]
    for selection in (one, four):
        quality, cost = selection["quality"], selection["cost"]
        assert quality["kept_fraction"] > 0.9
        assert quality["bandpass_amp_error"] < 0.03  # the truth beside the MS is used
        assert quality["bandpass_phase_error_deg"] < 3
        assert quality["corrected_model_phase_scatter_deg"] < 30
        assert 0.5 < quality["median_corrected_model_amp_ratio"] < 2
        assert quality["bandpass_snr_median"] > 5
        assert 0 < cost["peak_worker_rss_gb"] < 8 and cost["wall_seconds"] > 0
    assert bench["recommendation"]["selection"] in ("1", "0~3")
    assert "cheapest within 10%" in bench["recommendation"]["reason"]
    assert (folder / "spw_bench.png").stat().st_size > 10_000


def test_bad_selection_is_one_line(corrupted_small, tmp_path):
    result = run_cli("bench-spw", corrupted_small, "--selections", "1", "9", "--auto-fields",
                     "--out", tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "out of range" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("bench-spw", corrupted_small, "--selections", "1", "1", "--out", tmp_path)
    assert result.returncode == 2 and "once" in result.stderr
