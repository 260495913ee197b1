"""The main job (`make demo`) runs end to end and reports its outputs."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # builds or calibrates whole observations


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "--log-dir", str(tmp_path / "logs"), "demo",
         "--out", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "NOT phased to 0834+555" in result.stdout
    assert "phased to 0834+555: field" in result.stdout
    after = json.loads((tmp_path / "demo" / "check_after.json").read_text())
    assert after["phased_to_calibrator"] is True
    assert (tmp_path / "demo" / "demo.ms.truth.npz").exists()
    assert (tmp_path / "logs" / "casa.log").exists()
    assert (tmp_path / "demo" / "demo.cal.mms").exists()
    assert (tmp_path / "demo" / "demo_target.cal.mms").exists()
    assert (tmp_path / "demo" / "demo_bpcal").exists()
    assert "status ok" in result.stdout
    comparison = json.loads((tmp_path / "demo" / "images" / "image_comparison.json").read_text())
    (field,) = comparison["comparisons"]
    assert field["label"] == "all fields"  # the whole target file, shifted to its median meridian
    assert comparison["phase_shift"]["phasecenter"] == "median-meridian"
    assert field["coherence_after"] > 0.9 > field["coherence_before"]
    assert field["noise_ratio"] > 1 and field["dynamic_range_ratio"] > 1
    # QA reports: the calibrator's and the target's, with the images folded in
    calibrator_qa = json.loads((tmp_path / "demo" / "qa" / "demo" / "qa.json").read_text())
    metrics = calibrator_qa["visibilities"]["calibrator"]["metrics"]
    assert metrics["corrected_model_phase_scatter_deg"]["verdict"] == "good"
    target_page = (tmp_path / "demo" / "qa" / "demo_target" / "report.html").read_text()
    assert "Imaging: DATA vs CORRECTED" in target_page
    assert "QA report" in result.stdout
