"""The ``contimg`` command: parse and validate, then call the library."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import logging
import math
import signal
import sys
from pathlib import Path

from dsa110_contimg.errors import CasaTaskError, ContimgError
from dsa110_contimg.outputs import check_output_dir, check_output_file

log = logging.getLogger("dsa110_contimg.cli")

# Below this primary-beam response the calibrator is not in the observation at all.
MIN_VISIBLE_RESPONSE = 0.05


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole_number(minimum: int):
    """argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            limit = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise argparse.ArgumentTypeError(f"{limit}, not {value}")
        return value

    return parse


positive_int = whole_number(1)


def _add_simulation_options(parser) -> None:
    from dsa110_contimg.simulate import PRESETS

    parser.add_argument(
        "--preset",
        default="small",
        choices=sorted(PRESETS),
        help="size preset (default: small); options below override it",
    )
    parser.add_argument(
        "--n-antennas", type=int, help="antennas (2-96), spread over arms and outriggers"
    )
    parser.add_argument("--n-spw", type=int, help="spectral windows, from SPW 0 (1-16)")
    parser.add_argument("--n-chan", type=int, help="channels per SPW (48 gives 244.14 kHz)")
    parser.add_argument("--n-times", type=int, help="integrations, one field each")
    parser.add_argument(
        "--start-time", help="ISO UTC start (default: calibrator transits mid-file)"
    )
    parser.add_argument(
        "--pointing-dec", type=float, dest="pointing_dec_deg", help="pointing Dec, deg"
    )
    parser.add_argument("--calibrator", help="calibrator in the field (default 0834+555)")
    parser.add_argument(
        "--field-sources", type=int, dest="n_field_sources", help="number of faint field sources"
    )
    parser.add_argument(
        "--no-beam",
        dest="primary_beam",
        action="store_false",
        default=None,
        help="no primary-beam attenuation",
    )
    parser.add_argument(
        "--no-corruption",
        dest="corrupt",
        action="store_false",
        default=None,
        help="unit gains (no bandpass, no drifts)",
    )
    parser.add_argument(
        "--no-noise", dest="noise", action="store_false", default=None, help="no thermal noise"
    )
    parser.add_argument(
        "--no-autocorr",
        dest="autocorrelations",
        action="store_false",
        default=None,
        help="leave autocorrelations out",
    )
    parser.add_argument(
        "--dead-antenna",
        dest="dead_antennas",
        action="append",
        metavar="NAME",
        help="antenna that sees no signal (repeatable)",
    )
    parser.add_argument("--rfi-spikes", type=int, dest="n_rfi_spikes", help="RFI spikes to add")
    parser.add_argument("--zero-row-fraction", type=float, help="fraction of rows set to exact 0")
    parser.add_argument("--sefd", type=float, dest="sefd_jy", help="SEFD per antenna, Jy")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same MS)")


_SIMULATION_FIELDS = (
    "n_antennas", "n_spw", "n_chan", "n_times", "start_time", "pointing_dec_deg", "calibrator",
    "n_field_sources", "primary_beam", "corrupt", "noise", "autocorrelations", "dead_antennas",
    "n_rfi_spikes", "zero_row_fraction", "sefd_jy", "seed",
)  # fmt: skip


def _simulation_config(args):
    from dsa110_contimg.simulate import preset

    overrides = {k: getattr(args, k) for k in _SIMULATION_FIELDS if getattr(args, k) is not None}
    if "dead_antennas" in overrides:
        overrides["dead_antennas"] = tuple(overrides["dead_antennas"])
    config = preset(args.preset, **overrides)
    config.validate()
    return config


def _cmd_simulate(args) -> int:
    from dsa110_contimg.simulate import simulate_observation

    config = _simulation_config(args)
    log.debug("simulation config: %s", json.dumps(config.to_dict()))
    result = simulate_observation(args.out, config, overwrite=args.overwrite)
    print(f"MS:    {result.ms_path} ({result.n_rows} rows, {result.seconds:.1f} s)")
    print(f"truth: {result.truth_path}")
    return 0


def _cmd_inspect(args) -> int:
    from dsa110_contimg.ms.summary import format_summary, summarise_ms

    summary = summarise_ms(args.ms)
    if args.json:
        print_json(summary.to_dict())
    else:
        print(format_summary(summary))
    return 0


def _two_hours_after_transit(config) -> str:
    from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, transit_centred_start
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    duration = config.n_times * config.integration_s
    start = transit_centred_start(lookup_calibrator(config.calibrator).ra_deg, duration)
    return mjd_seconds_to_iso(start + 2 * 3600)


def _cmd_demo(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import (
        format_summary,
        plan_apply,
        plan_calibration,
        run_plan,
    )
    from dsa110_contimg.cluster import dask_client
    from dsa110_contimg.imaging.pipeline import format_comparison, run_imaging
    from dsa110_contimg.imaging.plan import ImagingConfig, plan_imaging
    from dsa110_contimg.ms.summary import format_summary as format_ms_summary
    from dsa110_contimg.ms.summary import summarise_ms
    from dsa110_contimg.phasing.check import check_phasing, format_report
    from dsa110_contimg.phasing.geometry import field_geometry, select_auto_fields
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

    fields = select_auto_fields(field_geometry(result.ms_path, calibrator), window=12)
    recipe = resolve_config()
    with dask_client() as client:
        print(f"Dask dashboard: {client.dashboard_link}")
        log.info(
            "demo 4/7: calibrate on fields %s~%s: flag, rephase, model, prebp phase, "
            "bandpass, gains, apply (a Dask task per SPW and step)",
            fields[0],
            fields[-1],
        )
        plan = plan_calibration(
            [str(result.ms_path)], calibrator, {str(result.ms_path): fields}, "103", recipe, out
        )
        calibrated = run_plan(plan, client, args.run_dir / "calibrate", calibrator)
        print(format_summary(calibrated))
        tables = calibrated["observations"][0]["merged_tables"]
        log.info("demo 5/7: apply the bandpass and 60 s gains to the target file")
        plan = plan_apply([str(target.ms_path)], [tables["bpcal"], tables["2gcal"]], recipe, out)
        applied = run_plan(plan, client, args.run_dir / "apply")
        print(format_summary(applied))
        target_mms = applied["observations"][0]["output_mms"]
        log.info("demo 6/7: image a target field from DATA and from CORRECTED_DATA")
        jobs = plan_imaging(target_mms, "12", "both", ImagingConfig(), out / "images")
        images = run_imaging(
            jobs, client, out / "images", args.run_dir / "image", truth_path=target.truth_path
        )
        print(format_comparison(images))
    after = check_phasing(calibrated["observations"][0]["output_mms"], calibrator, fields=fields)
    print(format_report(after))
    (out / "check_after.json").write_text(json.dumps(after.to_json_dict(), indent=2))
    log.info("demo 7/7: QA reports of the calibrator and the target (scores, qa.json, report.html)")
    reports = qa_of_calibration_run(calibrated, calibrator, out)
    reports += qa_of_calibration_run(applied, calibrator, out, images=images)
    for report in reports:
        print(report["text"])
    status = 0 if calibrated["status"] == applied["status"] == "ok" else 1

    print("\nOutputs:")
    print(f"  observation        {result.ms_path}")
    print(f"  truth              {result.truth_path}")
    print(f"  summary            {out / 'summary.json'}")
    print(f"  check (before)     {out / 'check_before.json'}")
    print(f"  calibrated MS      {calibrated['observations'][0]['output_mms']}")
    print(f"  caltables          {', '.join(tables.values())}")
    print(f"  check (after)      {out / 'check_after.json'}")
    print(f"  calibrated target  {applied['observations'][0]['output_mms']}")
    print(f"  image comparison   {images['json_path']}")
    for report in reports:
        print(f"  QA report          {report['report_html']}")
    for comparison in images["comparisons"]:
        print(f"  side by side       {comparison['png']}")
    print(f"  run summaries      {calibrated['summary_path']}, {applied['summary_path']}")
    print(f"  logs               {args.run_dir}")
    return status


def _cmd_image(args) -> int:
    from dsa110_contimg.cluster import dask_client
    from dsa110_contimg.imaging.pipeline import format_comparison, run_imaging
    from dsa110_contimg.imaging.plan import ImagingConfig, plan_imaging

    settings = {
        name: getattr(args, name)
        for name in (
            "niter", "nsigma", "cell_arcsec", "imsize", "pb_limit", "max_imsize",
            "deconvolver", "weighting", "robust",
        )
        if getattr(args, name) is not None
    }  # fmt: skip
    check_output_dir(args.out, "--out")
    jobs = plan_imaging(args.ms, args.field, args.datacolumn, ImagingConfig(**settings), args.out)
    catalog = _sources_to_measure(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    log.info(
        "%d image(s) of %d x %d pixels, %.2f arcsec cells",
        len(jobs),
        jobs[0].imsize,
        jobs[0].imsize,
        jobs[0].cell_arcsec,
    )
    with dask_client(scheduler_address=args.scheduler, n_workers=args.n_workers) as client:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
        result = run_imaging(
            jobs, client, args.out, args.run_dir, truth_path=args.truth, catalog=catalog
        )
    if args.json:
        print_json(result)
    else:
        print(format_comparison(result))
        print(f"comparison: {result['json_path']}")
    return 0


def _sources_to_measure(args) -> list:
    """The catalog (--catalog or the built-in one), with --calibrator's spectrum from --cal-*."""
    from dsa110_contimg.sky.calibrators import load_catalog

    catalog = list(load_catalog(args.catalog))
    if not (args.calibrator or args.cal_ra is not None or args.cal_dec is not None):
        if args.cal_flux is not None:
            raise ContimgError(
                "--cal-flux describes a calibrator: give --calibrator or --cal-ra/--cal-dec"
            )
        return catalog
    calibrator = _resolve_calibrator(args, args.ms)
    return [calibrator] + [c for c in catalog if c.name != calibrator.name]


def _cmd_qa(args) -> int:
    from dsa110_contimg.calibration.config import read_yaml_mapping
    from dsa110_contimg.ms.reads import require_ms
    from dsa110_contimg.qa.runner import default_truth, qa_report
    from dsa110_contimg.qa.scores import resolve_thresholds

    ms = require_ms(args.ms)
    calibrator = calibrator_of(args, ms, None, required=False)
    thresholds = (
        read_yaml_mapping(args.thresholds, "threshold names to anchors")
        if args.thresholds
        else None
    )
    resolve_thresholds(thresholds)
    images = _read_image_comparison(args.images) if args.images else None
    out = Path(args.out) if args.out else Path("qa") / ms.name.removesuffix(".ms")
    check_output_dir(out, "--out")
    report = qa_report(
        ms, out, args.caltables or (), calibrator, truth=args.truth or default_truth(ms),
        thresholds=thresholds, images=images,
    )  # fmt: skip
    if args.json:
        print_json(report["summary"])
    else:
        print(report["text"])
        print(f"qa.json: {report['qa_json']}")
        print(f"report: {report['report_html']}")
    return 0


def _read_image_comparison(path) -> dict:
    """The image_comparison.json of `contimg image`, or one clear error."""
    path = Path(path)
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContimgError(f"--images {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise ContimgError(
            f"--images {path} is not the JSON `contimg image` writes (image_comparison.json)"
        ) from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("comparisons"), list):
        raise ContimgError(f"--images {path} holds no image comparisons (`contimg image` JSON)")
    return loaded


def _cmd_reprocess(args) -> int:
    from dsa110_contimg.archive.manifest import Manifest
    from dsa110_contimg.archive.runner import format_status, plan_archive, run_archive
    from dsa110_contimg.calibration.cli import _client_context, cluster_profile
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.sky.calibrators import load_catalog

    if args.validity_hours <= 0:
        raise ContimgError("--validity-hours must be positive")
    config = resolve_config(args.preset, args.config)
    catalog = _catalog_with_user_flux(args, load_catalog(args.catalog))
    out = check_output_dir(args.out, "--out")
    if args.performance_report:
        check_output_file(args.performance_report, "--performance-report")
    cluster_profile(args)
    # Planning reads the manifest without creating one: a dry run or a refused
    # plan leaves nothing on disk.
    with Manifest(out, writable=False) as existing:
        archive = plan_archive(
            args.inputs, out, existing, config, args.refant, catalog, args.validity_hours
        )
    n_run = sum(len(p.observations) for p in archive.plans)
    print(
        f"{n_run} MS to process ({len(archive.calibrations)} calibrator file(s) to solve), "
        f"{len(archive.skipped)} done and unchanged, {len(archive.failed)} refused",
        flush=True,
    )
    for path, reason in archive.failed:
        print(f"  refused {path}: {reason}")
    if args.dry_run:
        return 0
    with Manifest(out) as manifest:
        report = (
            __import__("distributed").performance_report(filename=args.performance_report)
            if args.performance_report
            else __import__("contextlib").nullcontext()
        )
        with _client_context(args) as client, report:
            print(f"Dask dashboard: {client.dashboard_link}", flush=True)
            result = run_archive(archive, client, manifest, args.run_dir, catalog)
        summary_path = Path(args.run_dir) / "reprocess_summary.json"
        summary_path.write_text(json.dumps(result, indent=2))
        print(format_status(manifest))
        print(
            f"wall time {result['wall_seconds']:.1f} s; tasks {result['task_seconds']:.1f} s; "
            f"driver CPU {result['driver_cpu_seconds']:.1f} s; manifest {manifest.path}; "
            f"summary {summary_path}"
        )
        return 0 if result["counts"]["failed"] == 0 else 1


def _catalog_with_user_flux(args, catalog) -> tuple:
    """The catalog with --calibrator's spectrum from --cal-flux, --cal-ref-freq, --cal-index."""
    from dsa110_contimg.sky.calibrators import CalibratorRequest, resolve_calibrator

    if args.cal_flux is None and args.cal_ref_freq is None and args.cal_index is None:
        return catalog
    if not args.calibrator:
        raise ContimgError("--cal-flux needs --calibrator NAME: the catalog source it describes")
    if args.cal_ref_freq is None:
        raise ContimgError("reprocess --cal-flux needs --cal-ref-freq HZ (files may differ)")
    replaced = resolve_calibrator(
        CalibratorRequest(args.calibrator, None, None, args.cal_flux, args.cal_ref_freq,
                          args.cal_index),
        catalog,
    )  # fmt: skip
    return tuple(replaced if c.name == replaced.name else c for c in catalog)


def _cmd_status(args) -> int:
    from dsa110_contimg.archive.manifest import Manifest
    from dsa110_contimg.archive.runner import format_status, status_of

    path = Path(args.out) / Manifest.FILENAME
    if not path.exists():
        raise ContimgError(f"no manifest in {args.out} (run `contimg reprocess ... --out DIR`)")
    with Manifest(args.out, writable=False) as manifest:
        if args.json:
            print_json(status_of(manifest))
        else:
            print(format_status(manifest))
    return 0


def _add_calibrator_options(parser, with_ms: bool = True) -> None:
    if with_ms:
        parser.add_argument("ms_positional", nargs="?", metavar="MS", help="Measurement Set")
        parser.add_argument("--ms", dest="ms_option", help="Measurement Set (original spelling)")
    parser.add_argument("--calibrator", help="calibrator name, e.g. 0834+555 or J0834+5534")
    parser.add_argument("--cal-ra", type=float, help="calibrator RA, deg (with --cal-dec)")
    parser.add_argument("--cal-dec", type=float, help="calibrator Dec, deg (with --cal-ra)")
    _add_calibrator_flux_options(parser)
    parser.add_argument("--catalog", help="calibrator catalog: CSV or VLA calibrator list text")
    parser.add_argument("--field", help="fields, e.g. 10~14 or 3,4,5 (default: all)")
    parser.add_argument(
        "--auto-fields",
        action="store_true",
        help="choose the fields where the calibrator's beam response is highest",
    )
    parser.add_argument(
        "--field-window", type=int, help="with --auto-fields: N fields centred on the peak response"
    )
    parser.add_argument(
        "--min-pb-response",
        type=float,
        default=0.3,
        help="with --auto-fields: minimum beam response (default 0.3)",
    )
    parser.add_argument(
        "--no-beam",
        dest="primary_beam",
        action="store_false",
        help="model without primary-beam attenuation",
    )


def _add_calibrator_flux_options(parser) -> None:
    parser.add_argument(
        "--cal-flux", type=float, metavar="JY", help="calibrator flux density (over the catalog's)"
    )
    parser.add_argument(
        "--cal-ref-freq", type=float, metavar="HZ", help="frequency of --cal-flux (default: centre)"
    )
    parser.add_argument(
        "--cal-index", type=float, metavar="ALPHA", help="spectral index, S ~ nu^alpha (default 0)"
    )


def _calibrator_request(args):
    from dsa110_contimg.sky.calibrators import CalibratorRequest

    return CalibratorRequest(
        name=getattr(args, "calibrator", None),
        ra_deg=getattr(args, "cal_ra", None),
        dec_deg=getattr(args, "cal_dec", None),
        flux_jy=getattr(args, "cal_flux", None),
        ref_freq_hz=getattr(args, "cal_ref_freq", None),
        spectral_index=getattr(args, "cal_index", None),
    )


def _centre_freq_hz(ms) -> float:
    import numpy as np

    from dsa110_contimg.ms.reads import chan_freq_hz

    freqs = np.concatenate(chan_freq_hz(ms))
    return float(0.5 * (freqs.min() + freqs.max()))


def _resolve_ms(args) -> str:
    ms = args.ms_option or args.ms_positional
    if not ms:
        raise ContimgError("no Measurement Set given (MS or --ms)")
    from dsa110_contimg.ms.reads import require_ms

    return str(require_ms(ms))


def _resolve_calibrator(args, ms=None, needs_flux: str | None = None):
    """The calibrator of --calibrator or --cal-ra/--cal-dec, with --cal-flux when given.

    ``needs_flux`` names what would use a guessed flux (a model, a flux
    scale): such commands refuse a position whose flux is unknown; others warn.
    """
    from dsa110_contimg.sky.calibrators import (
        UNKNOWN_FLUX,
        load_catalog,
        require_known_flux,
        resolve_calibrator,
    )

    catalog = load_catalog(args.catalog)
    centre = _centre_freq_hz(ms) if ms is not None else None
    calibrator = resolve_calibrator(_calibrator_request(args), catalog, centre)
    if needs_flux:
        require_known_flux(calibrator, needs_flux)
    elif calibrator.reference.startswith(UNKNOWN_FLUX):
        log.warning(
            "%s: flux unknown, 1 Jy assumed (amplitude ratios against the model are in units "
            "of its true flux); give --cal-flux JY",
            calibrator.name,
        )
    log.debug("calibrator %s: %s", calibrator.name, calibrator.reference)
    return calibrator


def calibrator_of(args, ms, needs_flux: str | None, required: bool = True):
    """--calibrator / --cal-ra,--cal-dec, else the catalog source brightest in the beam.

    --cal-flux (with --cal-ref-freq, --cal-index) replaces the spectrum of
    whichever calibrator this is. Without ``required``, None when no catalog
    source is in the beam.
    """
    from dsa110_contimg.phasing.geometry import brightest_calibrator_in_beam
    from dsa110_contimg.sky.calibrators import load_catalog

    if args.calibrator or args.cal_ra is not None or args.cal_dec is not None:
        return _resolve_calibrator(args, ms, needs_flux)
    best, best_flux = brightest_calibrator_in_beam(
        ms, load_catalog(args.catalog), MIN_VISIBLE_RESPONSE
    )
    if best is None and (required or args.cal_flux is not None):
        raise ContimgError(
            f"no catalog calibrator is in the primary beam of {ms}: give --calibrator NAME "
            "(or --cal-ra/--cal-dec with --cal-flux)"
        )
    if best is None:
        return None
    log.info("calibrator from the catalog: %s (%.2f Jy apparent)", best.name, best_flux)
    if args.cal_flux is None:
        return best
    return _resolve_calibrator(argparse.Namespace(**{**vars(args), "calibrator": best.name}), ms)


def _resolve_fields(args, ms, calibrator, required: bool):
    """Field ids from --field or --auto-fields; None means all fields."""
    from dsa110_contimg.phasing.geometry import field_geometry, select_auto_fields

    if args.auto_fields and args.field:
        if not getattr(args, "original_spelling", False):
            raise ContimgError(
                "give the fields by --field or choose them with --auto-fields, not both"
            )
        # The original pipeline's command lines pass both; there --auto-fields chose.
        log.info("--auto-fields chooses the fields: --field %s is not used", args.field)
    geometry = field_geometry(ms, calibrator)
    best = max(g.pb_response for g in geometry)
    if best < MIN_VISIBLE_RESPONSE:
        raise ContimgError(
            f"{calibrator.name} is outside every field's primary beam in {ms} "
            f"(best response {best:.2g} < {MIN_VISIBLE_RESPONSE})"
        )
    if args.auto_fields:
        fields = select_auto_fields(geometry, args.field_window, args.min_pb_response)
        if not fields:
            raise ContimgError(
                f"no field sees {calibrator.name} with primary-beam response >= "
                f"{args.min_pb_response} (best {best:.2f}); lower --min-pb-response"
            )
        log.info("auto-selected fields %s (beam response %.2f at peak)", fields, best)
        return fields
    if args.field:
        from dsa110_contimg.selection import parse_index_selection

        return parse_index_selection(args.field, "field", len(geometry))
    if required:
        raise ContimgError("choose the calibrator fields with --field or --auto-fields")
    return None


def _cmd_check_phasing(args) -> int:
    from dsa110_contimg.phasing.check import check_phasing, format_report

    ms = _resolve_ms(args)
    calibrator = _resolve_calibrator(args, ms)
    fields = _resolve_fields(args, ms, calibrator, required=False)
    report = check_phasing(
        ms,
        calibrator,
        fields=fields,
        primary_beam=args.primary_beam,
        visibilities=not args.geometry_only,
    )
    if args.json:
        print_json(report.to_json_dict())
    else:
        print(format_report(report))
    return 0


def _cmd_rephase(args) -> int:
    from dsa110_contimg.cluster import dask_client
    from dsa110_contimg.phasing.check import format_report
    from dsa110_contimg.phasing.rephase import plan_rephase, rephase_and_model

    ms = _resolve_ms(args)
    calibrator = _resolve_calibrator(args, ms, "the model" if args.write_model else None)
    fields = _resolve_fields(args, ms, calibrator, required=True)
    plan = plan_rephase(ms, calibrator, fields, args.out)
    if args.out and Path(args.out).exists() and not args.overwrite and not plan.already_phased:
        raise ContimgError(f"{args.out} already exists; pass --overwrite to replace it")
    log.info("rephase plan: %s", plan)
    if args.dry_run:
        print(plan)
        return 0
    with dask_client(args.scheduler, n_workers=1) as client:
        report = rephase_and_model(
            plan,
            calibrator,
            client,
            write_model=args.write_model,
            primary_beam=args.primary_beam,
            log_file=str(args.run_dir / "casa-phaseshift.log"),
        )
    print(format_report(report))
    print(f"rephased MS: {plan.output_ms}")
    return 0


def _cmd_write_model(args) -> int:
    import dask

    from dsa110_contimg.phasing.model import add_model_write_graph

    ms = _resolve_ms(args)
    from dsa110_contimg.ms.reads import require_parallel_hands

    require_parallel_hands(ms, "a calibrator model")
    calibrator = _resolve_calibrator(args, ms, "the model")
    _resolve_fields(args, ms, calibrator, required=False)
    from dsa110_contimg import casa_env

    with casa_env.casa_output_to_log():
        dask.compute(add_model_write_graph(ms, calibrator, primary_beam=args.primary_beam))
    print(f"MODEL_DATA of {ms} written for {calibrator.name} (every field, its own phase centre)")
    return 0


def command_parser(prog: str, description: str | None):
    """(parser, subcommands) with the options every command line shares."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--log-dir",
        help="directory for this run's logs (default: a new one "
        "under $CONTIMG_RUN_ROOT or ./contimg_runs)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    return parser, parser.add_subparsers(dest="command", required=True, parser_class=_Parser)


def build_parser() -> argparse.ArgumentParser:
    parser, commands = command_parser("contimg", __doc__)

    simulate = commands.add_parser("simulate", help="write a synthetic DSA-110 observation")
    simulate.add_argument("out", help="output Measurement Set path (e.g. obs.ms)")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing MS")
    _add_simulation_options(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    inspect = commands.add_parser("inspect", help="summarise an MS (structure, per-SPW figures)")
    inspect.add_argument("ms")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=_cmd_inspect)

    check = commands.add_parser(
        "check-phasing", help="is the MS phased to the calibrator? is MODEL_DATA right?"
    )
    _add_calibrator_options(check)
    check.add_argument("--json", action="store_true", help="print JSON (schema in README)")
    check.add_argument("--geometry-only", action="store_true", help="skip visibility metrics")
    check.set_defaults(func=_cmd_check_phasing)

    rephase = commands.add_parser(
        "rephase", help="shift calibrator fields to the calibrator (new MS) and write the model"
    )
    _add_calibrator_options(rephase)
    rephase.add_argument("--out", help="rephased MS (default <ms>_<calibrator>.ms beside it)")
    rephase.add_argument("--overwrite", action="store_true")
    rephase.add_argument(
        "--no-model", dest="write_model", action="store_false", help="do not write MODEL_DATA"
    )
    rephase.add_argument("--scheduler", help="existing Dask scheduler, tcp://HOST:PORT")
    rephase.add_argument("--dry-run", action="store_true", help="print the plan only")
    rephase.set_defaults(func=_cmd_rephase)

    model = commands.add_parser("write-model", help="write MODEL_DATA for the calibrator")
    _add_calibrator_options(model)
    model.set_defaults(func=_cmd_write_model)

    demo = commands.add_parser("demo", help="the whole system on a small simulated observation")
    demo.add_argument("--out", default="demo_output", help="output directory (default demo_output)")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)

    image = commands.add_parser(
        "image", help="image DATA and CORRECTED_DATA with tclean and compare them"
    )
    image.add_argument("ms", help="Measurement Set (or calibrated Multi-MS)")
    image.add_argument("--field", help="fields, e.g. 12 or 10~14 (default: all)")
    image.add_argument(
        "--datacolumn", default="both", choices=["data", "corrected", "both"], help="default both"
    )
    image.add_argument("--out", default="images", help="output directory (default ./images)")
    image.add_argument("--truth", help="simulation truth file for the known sources")
    image.add_argument("--catalog", help="sources to measure when there is no truth file")
    image.add_argument(
        "--calibrator", help="a catalog source to measure (with --cal-flux: its flux)"
    )
    image.add_argument("--cal-ra", type=float, help="a source to measure: RA, deg")
    image.add_argument("--cal-dec", type=float, help="a source to measure: Dec, deg")
    _add_calibrator_flux_options(image)
    image.add_argument("--niter", type=int, help="CLEAN iterations (default 1000)")
    image.add_argument("--nsigma", type=float, help="CLEAN stops at this many sigma (default 4)")
    image.add_argument("--cell", type=float, dest="cell_arcsec", help="cell, arcsec")
    image.add_argument("--imsize", type=int, help="pixels per side")
    image.add_argument("--pb-limit", type=float, help="image to this beam response (default 0.2)")
    image.add_argument("--max-imsize", type=int, help="refuse larger images (default 4096)")
    image.add_argument("--deconvolver", choices=["hogbom", "multiscale"])
    image.add_argument("--weighting", choices=["briggs", "natural", "uniform"])
    image.add_argument("--robust", type=float, help="Briggs robust (default 0)")
    image.add_argument("--scheduler", help="existing Dask scheduler, tcp://HOST:PORT")
    image.add_argument("--n-workers", type=positive_int, help="local cluster worker processes")
    image.add_argument("--json", action="store_true", help="print the comparison JSON")
    image.set_defaults(func=_cmd_image)

    qa = commands.add_parser(
        "qa", help="QA of an MS and its caltables: scores, qa.json and report.html"
    )
    qa.add_argument("ms", help="Measurement Set (or calibrated Multi-MS)")
    qa.add_argument("--caltables", nargs="+", help="calibration tables to assess")
    qa.add_argument("--out", help="output directory (default ./qa/<ms name>)")
    qa.add_argument("--calibrator", help="calibrator name (default: brightest catalog source)")
    qa.add_argument("--cal-ra", type=float, help="calibrator RA, deg (with --cal-dec)")
    qa.add_argument("--cal-dec", type=float, help="calibrator Dec, deg (with --cal-ra)")
    _add_calibrator_flux_options(qa)
    qa.add_argument("--catalog", help="calibrator catalog: CSV or VLA calibrator list text")
    qa.add_argument("--truth", help="simulation truth file (default: <ms>.truth.npz if present)")
    qa.add_argument("--thresholds", help="YAML of threshold overrides {name: {good: ...}}")
    qa.add_argument("--images", help="image_comparison.json of `contimg image` to fold in")
    qa.add_argument("--json", action="store_true", help="print qa.json")
    qa.set_defaults(func=_cmd_qa)

    reprocess = commands.add_parser(
        "reprocess", help="calibrate, apply and QA a whole archive on the cluster (resumable)"
    )
    reprocess.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="MS paths, directories, or lists of MS paths"
    )
    reprocess.add_argument("--out", required=True, help="output directory (holds the manifest)")
    reprocess.add_argument(
        "--validity-hours", type=float, default=12.0, help="calibrator-target gap allowed (12)"
    )
    reprocess.add_argument("--refant", default="103", help="name, index or DSA station number")
    reprocess.add_argument("--preset", default="default", help="recipe preset")
    reprocess.add_argument("--config", help="YAML file of recipe settings")
    reprocess.add_argument("--catalog", help="calibrator catalog: CSV or VLA list text")
    reprocess.add_argument("--calibrator", help="the catalog source --cal-flux describes")
    _add_calibrator_flux_options(reprocess)
    reprocess.add_argument("--dry-run", action="store_true", help="print the plan only")
    reprocess.add_argument("--scheduler", help="existing Dask scheduler, tcp://HOST:PORT")
    reprocess.add_argument("--cluster", help="cluster profile: local, ssh, slurm or a YAML file")
    reprocess.add_argument("--cluster-option", action="append", metavar="KEY=VALUE")
    reprocess.add_argument("--n-workers", type=positive_int, help="local cluster: worker processes")
    reprocess.add_argument("--performance-report", metavar="FILE.html")
    reprocess.set_defaults(func=_cmd_reprocess)

    status = commands.add_parser("status", help="what a reprocess run has done (its manifest)")
    status.add_argument("out", help="the reprocess output directory")
    status.add_argument("--json", action="store_true", help="every MS with its state, and counts")
    status.set_defaults(func=_cmd_status)

    from dsa110_contimg.calibration.cli import add_calibration_commands

    add_calibration_commands(commands)
    return parser


def main(argv=None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser, argv=None) -> int:
    """Parse, start the run's logs, run the command; failures -> one line.

    Exit status 2 for input the user can fix, 1 when a CASA task or a file
    operation fails (disk full, unwritable output); the traceback goes to
    the run's ``contimg.log``.
    """
    from dsa110_contimg.runlog import start_run_logging

    args = parser.parse_args(argv)
    previous_sigterm = _raise_on_sigterm()
    # With --json, stdout carries the one JSON document only; every other line
    # (dashboard address, progress) goes to stderr.
    json_mode = getattr(args, "json", False)
    _json_stream.set(sys.stdout if json_mode else None)
    other_output = contextlib.redirect_stdout(sys.stderr) if json_mode else contextlib.nullcontext()
    try:
        args.run_dir = start_run_logging(args.command, args.log_dir, args.verbose)
        with other_output:
            return args.func(args)
    except Terminated:
        print("contimg: terminated (SIGTERM); nothing was published", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("contimg: interrupted; nothing was published", file=sys.stderr)
        return 130
    except ContimgError as err:
        print(f"contimg: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from dsa110_contimg.ms.reads import table_failure_text

        failure = table_failure_text(err) if not isinstance(err, CasaTaskError) else None
        if failure is None:
            message = _run_failure(err, getattr(args, "run_dir", None))
            if message is None:
                raise
            print(f"contimg: error: {message}", file=sys.stderr)
            return 1
        log.debug("%s failed", args.command, exc_info=True)
        print(
            f"contimg: error: a table could not be read ({failure}): the input is damaged or "
            "truncated",
            file=sys.stderr,
        )
        return 2
    except Exception as err:
        message = _run_failure(err, getattr(args, "run_dir", None))
        if message is None:
            raise
        log.debug("%s failed", args.command, exc_info=True)
        print(f"contimg: error: {message}", file=sys.stderr)
        return 1
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


_json_stream: contextvars.ContextVar = contextvars.ContextVar("json_stream", default=None)


def print_json(document) -> None:
    """Write ``document`` as the command's one JSON document (strict: NaN and inf as null)."""
    stream = _json_stream.get() or sys.stdout
    stream.write(json.dumps(_strict(document), indent=2, default=str, allow_nan=False) + "\n")
    stream.flush()


def _strict(value):
    """``value`` with numpy values as Python ones and non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):
        return _strict(value.tolist())
    return value


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so every product in progress is dropped."""


def _raise_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` in the main thread; the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def _run_failure(err: Exception, run_dir) -> str | None:
    """One line for a failure outside the program's control; None for anything else."""
    if isinstance(err, CasaTaskError):
        return " ".join(str(err).split())
    if isinstance(err, OSError):
        if err.strerror and err.filename:
            return f"{err.strerror}: {err.filename}"
        return " ".join(str(err).split()) or type(err).__name__
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(err, distributed.KilledWorker):
        tries = err.allowed_failures + 1
        return (
            f"a Dask worker process died running {err.task} ({tries} "
            f"{'try' if tries == 1 else 'tries'}): out of memory, a full disk or a CASA crash; "
            f"the task's CASA log is under {run_dir}"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
