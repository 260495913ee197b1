"""QA products of whole runs: one report per calibrated MS, written where the run says."""

from __future__ import annotations

import logging
from pathlib import Path

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.qa.html import write_report
from dsa110_contimg.qa.report import format_qa, run_qa
from dsa110_contimg.simulate.truth import truth_path

log = logging.getLogger(__name__)


def default_truth(ms) -> str | None:
    """The simulation truth saved beside ``ms``, if there is one."""
    path = truth_path(ms)
    return str(path) if path.exists() else None


def qa_report(ms, out_dir, caltables=(), calibrator=None, truth=None, thresholds=None,
              images=None, visibility_qa=None) -> dict:  # fmt: skip
    """Run QA of ``ms`` and write ``qa.json`` and ``report.html`` into ``out_dir``."""
    result = run_qa(ms, caltables, calibrator, thresholds, truth=truth,
                    visibility_qa=visibility_qa)  # fmt: skip
    paths = write_report(out_dir, result.summary, result.plots, images)
    return {**paths, "summary": result.summary, "text": format_qa(result.summary)}


def qa_of_calibration_run(summary, calibrator, run_dir, images=None) -> list[dict]:
    """A report per calibrated MS of a calibrate/apply run (a ``RunSummary``), in
    ``run_dir/qa/<stem>``.

    A QA failure is logged and reported, never fatal to the calibration it describes.
    """
    reports = []
    for obs in summary.observations:
        if not obs.output_mms:
            continue
        try:
            report = qa_report(
                obs.output_mms, Path(run_dir) / "qa" / obs.stem, obs.tables, calibrator,
                truth=default_truth(obs.ms), images=images,
                visibility_qa=saved_visibility_qa(run_dir, obs.stem, obs.output_mms),
            )  # fmt: skip
        except ContimgError as error:
            log.warning("QA of %s skipped: %s", obs.output_mms, error)
            continue
        except Exception as error:  # noqa: BLE001 - QA must not fail the calibration it describes
            log.warning("QA of %s failed: %s: %s", obs.output_mms, type(error).__name__, error)
            continue
        reports.append(report)
    return reports


def saved_visibility_qa(run_dir, stem: str, output_mms):
    """The run's own QA pass of every sub-MS of ``output_mms``, or None when any is missing."""
    from dsa110_contimg.ms.mms import sub_ms_paths
    from dsa110_contimg.qa.graph import load_visibility_qa, spw_visibility_qa_path

    saved = sorted(spw_visibility_qa_path(run_dir, stem, 0).parent.glob("spw*.pickle"))
    if not saved or len(saved) != len(sub_ms_paths(output_mms)):
        return None
    return load_visibility_qa(saved)
