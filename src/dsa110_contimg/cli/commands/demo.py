"""``contimg demo``: the whole system on a small simulated observation with known truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("dsa110_contimg.cli")


def register(commands) -> None:
    demo = commands.add_parser("demo", help="the whole system on a small simulated observation")
    demo.add_argument("--out", default="demo_output", help="output directory (default demo_output)")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=run_demo)


def _two_hours_after_transit(config) -> str:
    from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, transit_centred_start
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    duration = config.n_times * config.integration_s
    start = transit_centred_start(lookup_calibrator(config.calibrator).ra_deg, duration)
    return mjd_seconds_to_iso(start + 2 * 3600)


def run_demo(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import plan_apply, plan_calibration, run_plan
    from dsa110_contimg.calibration.summary import format_summary
    from dsa110_contimg.cluster.run import ClusterChoice, open_run
    from dsa110_contimg.imaging.pipeline import format_comparison, run_imaging
    from dsa110_contimg.imaging.plan import ImagingConfig, parse_phasecenter, plan_whole_file
    from dsa110_contimg.ms.summary import format_summary as format_ms_summary
    from dsa110_contimg.ms.summary import summarise_ms
    from dsa110_contimg.phasing.check import check_phasing, format_report
    from dsa110_contimg.phasing.geometry import FieldChoice, choose_fields
    from dsa110_contimg.qa.runner import qa_of_calibration_run
    from dsa110_contimg.simulate import preset, simulate_observation
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    # Gains without a slow phase drift, so a target file two hours after the
    # transit shares the calibrator's gains and the solutions transfer.
    config = preset("small", n_field_sources=6, seed=args.seed, drift_phase_rms_deg=0.0)
    calibrator = lookup_calibrator(config.calibrator)

    log.info("demo 1/7: simulate a calibrator transit and a later target file, known truth")
    result = simulate_observation(out / "demo.ms", config, overwrite=True)
    target = simulate_observation(
        out / "demo_target.ms",
        config.replace(start_time=_two_hours_after_transit(config)),
        overwrite=True,
    )
    log.info("demo 2/7: inspect the calibrator file through dask-ms")
    summary = summarise_ms(result.ms_path)
    print(format_ms_summary(summary))
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))

    log.info("demo 3/7: phase-centre check against %s (PHASE_DIR, visibilities)", calibrator.name)
    before = check_phasing(result.ms_path, calibrator)
    print(format_report(before))
    (out / "check_before.json").write_text(json.dumps(before.to_json_dict(), indent=2))

    fields = choose_fields(result.ms_path, calibrator, FieldChoice(auto=True, window=12))
    recipe = resolve_config()
    with open_run(ClusterChoice(), args.run_dir, progress=False) as run:
        log.info(
            "demo 4/7: calibrate on fields %s~%s: flag, rephase, model, prebp phase, "
            "bandpass, gains, apply (a Dask task per SPW and step)",
            fields[0],
            fields[-1],
        )
        plan = plan_calibration(
            [str(result.ms_path)], calibrator, {str(result.ms_path): fields}, "103", recipe, out
        )
        calibrated = run_plan(plan, run.client, run.run_dir / "calibrate", calibrator)
        print(format_summary(calibrated))
        (solved,) = calibrated.observations
        tables = solved.merged_tables
        log.info("demo 5/7: apply the bandpass and 60 s gains to the target file")
        plan = plan_apply([str(target.ms_path)], [tables["bpcal"], tables["2gcal"]], recipe, out)
        applied = run_plan(plan, run.client, run.run_dir / "apply")
        print(format_summary(applied))
        (target_result,) = applied.observations
        log.info(
            "demo 6/7: image the whole target file (every field shifted to the median "
            "meridian) from DATA and from CORRECTED_DATA"
        )
        centre, label = parse_phasecenter("median-meridian", target_result.output_mms)
        shift, jobs = plan_whole_file(
            target_result.output_mms, centre, label, "both", ImagingConfig(), out / "images"
        )
        images = run_imaging(
            jobs, run.client, out / "images", run.run_dir / "image",
            truth_path=target.truth_path, shift=shift,
        )  # fmt: skip
        print(format_comparison(images))
    after = check_phasing(solved.output_mms, calibrator, fields=fields)
    print(format_report(after))
    (out / "check_after.json").write_text(json.dumps(after.to_json_dict(), indent=2))
    log.info("demo 7/7: QA reports of the calibrator and the target (scores, qa.json, report.html)")
    reports = qa_of_calibration_run(calibrated, calibrator, out)
    reports += qa_of_calibration_run(applied, calibrator, out, images=images)
    for report in reports:
        print(report["text"])
    status = 0 if calibrated.status == applied.status == "ok" else 1

    print("\nOutputs:")
    print(f"  observation        {result.ms_path}")
    print(f"  truth              {result.truth_path}")
    print(f"  summary            {out / 'summary.json'}")
    print(f"  check (before)     {out / 'check_before.json'}")
    print(f"  calibrated MS      {solved.output_mms}")
    print(f"  caltables          {', '.join(tables.values())}")
    print(f"  check (after)      {out / 'check_after.json'}")
    print(f"  calibrated target  {target_result.output_mms}")
    print(f"  shifted target     {shift.output_ms}")
    print(f"  image comparison   {images['json_path']}")
    for report in reports:
        print(f"  QA report          {report['report_html']}")
    for comparison in images["comparisons"]:
        print(f"  side by side       {comparison['png']}")
    print(f"  run summaries      {calibrated.summary_path}, {applied.summary_path}")
    print(f"  logs               {args.run_dir}")
    return status
