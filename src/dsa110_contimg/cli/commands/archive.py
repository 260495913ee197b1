"""``reprocess`` and ``status``: a whole archive on the cluster, resumable, and its state."""

from __future__ import annotations

import json
from pathlib import Path

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import (
    add_calibrator_flux_options,
    add_cluster_options,
    add_json_option,
    check_performance_report,
    cluster_choice,
)
from dsa110_contimg.errors import ContimgError


def register(commands) -> None:
    reprocess = commands.add_parser(
        "reprocess", help="calibrate, apply and QA a whole archive on the cluster (resumable)"
    )
    reprocess.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="MS paths, UVH5 subband files, directories of either, or lists of MS paths",
    )  # fmt: skip
    reprocess.add_argument("--out", required=True, help="output directory (holds the manifest)")
    reprocess.add_argument(
        "--validity-hours", type=float, default=12.0, help="calibrator-target gap allowed (12)"
    )
    reprocess.add_argument("--refant", default="103", help="name, index or DSA station number")
    reprocess.add_argument("--preset", default="default", help="recipe preset")
    reprocess.add_argument("--config", help="YAML file of recipe settings")
    reprocess.add_argument(
        "--engine", choices=["casa", "native"], help="who solves (default native; see calibrate)"
    )
    reprocess.add_argument("--catalog", help="calibrator catalog: CSV or VLA list text")
    reprocess.add_argument("--calibrator", help="the catalog source --cal-flux describes")
    add_calibrator_flux_options(reprocess)
    reprocess.add_argument("--dry-run", action="store_true", help="print the plan only")
    reprocess.add_argument(
        "--allow-partial", action="store_true",
        help="subband files: convert an observation with missing subbands (default: refuse it)",
    )  # fmt: skip
    reprocess.add_argument(
        "--time-tolerance", type=float, default=0.0, metavar="SECONDS",
        help="subband files: one observation when time stamps are this close (default 0)",
    )  # fmt: skip
    add_cluster_options(reprocess)
    reprocess.set_defaults(func=run_reprocess)

    status = commands.add_parser("status", help="what a reprocess run has done (its manifest)")
    status.add_argument("out", help="the reprocess output directory")
    add_json_option(status, "every MS with its state, and counts")
    status.set_defaults(func=run_status)


def run_reprocess(args) -> int:
    from dsa110_contimg.archive.manifest import Manifest
    from dsa110_contimg.archive.plan import (
        CALIBRATOR_MIN_RESPONSE,
        format_archive_plan,
        plan_archive,
    )
    from dsa110_contimg.archive.raw import format_raw_plan, pending_entry, plan_raw, split_inputs
    from dsa110_contimg.archive.runner import format_status, run_archive
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.cluster.run import open_run
    from dsa110_contimg.outputs import check_output_dir
    from dsa110_contimg.sky.calibrators import load_catalog

    if args.validity_hours <= 0:
        raise ContimgError("--validity-hours must be positive")
    config = resolve_config(args.preset, args.config,
                            {"engine": args.engine} if args.engine else None)  # fmt: skip
    catalog = _catalog_with_user_flux(args, load_catalog(args.catalog))
    out = check_output_dir(args.out, "--out")
    check_performance_report(args)
    cluster = cluster_choice(args)
    min_response = CALIBRATOR_MIN_RESPONSE
    # Planning reads the manifest without creating one: a dry run or a refused
    # plan leaves nothing on disk. Observations to convert are planned from
    # their headers and converted in the same graph as the calibration.
    raw_inputs, ms_inputs = split_inputs(args.inputs)
    with Manifest(out, writable=False) as existing:
        raw, pending = None, []
        if raw_inputs:
            raw = plan_raw(raw_inputs, out, existing, args.allow_partial, args.time_tolerance)
            print(format_raw_plan(raw), flush=True)
            pending = [pending_entry(j, catalog, min_response) for j in raw.conversions.jobs]
        inputs = ms_inputs + list(raw.ready if raw else ())
        archive = None
        if inputs or pending:
            archive = plan_archive(inputs, out, existing, config, args.refant, catalog,
                                   args.validity_hours, min_response, pending)  # fmt: skip
            print(format_archive_plan(archive), flush=True)
    if args.dry_run:
        return 0
    with Manifest(out) as manifest:
        result = None
        if archive is not None or raw is not None:
            with open_run(cluster, args.run_dir, args.performance_report) as run:
                result = run_archive(archive or _nothing(), run.client, manifest, run.run_dir,
                                     catalog, progress=run.progress, raw=raw)  # fmt: skip
        summary_path = Path(args.run_dir) / "reprocess_summary.json"
        if result is not None:
            summary_path.write_text(json.dumps(result, indent=2))
        print(format_status(manifest))
        if result is not None:
            print(
                f"wall time {result['wall_seconds']:.1f} s; tasks {result['task_seconds']:.1f} s; "
                f"driver CPU {result['driver_cpu_seconds']:.1f} s; manifest {manifest.path}; "
                f"summary {summary_path}"
            )
        return 0 if manifest.counts()["failed"] == 0 else 1


def _nothing():
    from dsa110_contimg.archive.plan import ArchivePlan

    return ArchivePlan((), (), (), ())


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


def run_status(args) -> int:
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
