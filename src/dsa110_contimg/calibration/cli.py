"""``calibrate`` and ``apply`` commands (``contimg calibrate`` and the original spelling).

The original pipeline's command lines work unchanged::

    python -m dsa110_contimg.calibration.cli calibrate --ms X.ms --field 0 --refant 103 \\
        --auto-fields --model-source catalog --bp-combine-field --combine-spw \\
        --prebp-phase --prebp-minsnr 3.0
    python -m dsa110_contimg.calibration.cli apply --ms target.ms --field N \\
        --tables A_bpcal A_2gcal
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dsa110_contimg.cli import positive_int, print_json, whole_number
from dsa110_contimg.errors import ContimgError

log = logging.getLogger("dsa110_contimg.calibration.cli")


def _add_input_options(parser) -> None:
    parser.add_argument("ms_positional", nargs="*", metavar="MS", help="Measurement Set(s)")
    parser.add_argument("--ms", dest="ms_option", nargs="+", help="Measurement Set(s)")
    parser.add_argument("--spw", help="SPW selection, e.g. 4~11 (default: all)")
    parser.add_argument("--out", help="output directory (default: beside the first MS)")
    parser.add_argument(
        "--preset", default="default", help="recipe preset: default, fast, thorough"
    )
    parser.add_argument("--config", help="YAML file of recipe settings (sections as in README)")
    parser.add_argument(
        "--retries", type=whole_number(0), help="retries of a failing task (default 1)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; touch nothing")
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-flag", action="store_true", help="do not flag autocorrelations and zeros"
    )
    parser.add_argument("--tfcrop", action="store_true", help="also flag RFI with tfcrop")
    parser.add_argument("--rflag", action="store_true", help="also flag RFI with rflag")
    parser.add_argument("--calwt", action="store_true", help="calibrate the weights too")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--scheduler", help="use an existing Dask scheduler, tcp://HOST:PORT")
    cluster.add_argument(
        "--cluster", help="cluster profile: local (default), ssh, slurm, or a YAML file"
    )
    cluster.add_argument(
        "--cluster-option",
        action="append",
        metavar="KEY=VALUE",
        help="override a profile setting, e.g. memory=16GB (repeatable)",
    )
    cluster.add_argument("--n-workers", type=positive_int, help="local cluster: worker processes")
    cluster.add_argument(
        "--performance-report", metavar="FILE.html", help="write Dask's performance report"
    )


def add_calibration_commands(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="solve on the calibrator (prebp phase, bandpass, gains) and apply, per SPW on Dask",
    )
    _add_input_options(calibrate)
    _add_recipe_options(calibrate)
    calibrate.set_defaults(func=cmd_calibrate)

    bench = commands.add_parser(
        "bench-spw",
        help="calibrate with each SPW selection (concurrently) and compare quality and cost",
    )
    _add_input_options(bench)
    _add_recipe_options(bench)
    bench.add_argument(
        "--selections", nargs="+", required=True, metavar="SEL",
        help='SPW selections to compare, e.g. "4~11" "0~15" "6~9"',
    )  # fmt: skip
    bench.add_argument(
        "--tolerance", type=float, default=0.1,
        help="recommend the cheapest selection within this fraction of the best (default 0.1)",
    )  # fmt: skip
    bench.add_argument("--truth", help="simulation truth (default: <ms>.truth.npz if present)")
    bench.set_defaults(func=cmd_bench_spw)

    apply = commands.add_parser(
        "apply", help="apply caltables to MSs (a calibrated Multi-MS per MS, DATA untouched)"
    )
    _add_input_options(apply)
    apply.add_argument("--field", help="fields to calibrate, e.g. 3 or 0~5 (default: all)")
    apply.add_argument("--tables", nargs="+", required=True, help="caltables, applied in order")
    apply.set_defaults(func=cmd_apply)


def _add_recipe_options(calibrate) -> None:
    from dsa110_contimg.cli import _add_calibrator_options

    calibrator = calibrate.add_argument_group("calibrator and fields")
    _add_calibrator_options(calibrator, with_ms=False)
    calibrator.add_argument(
        "--model-source",
        choices=["catalog"],
        default="catalog",
        help="calibrator model: the catalog flux, spectral index and position",
    )
    calibrator.add_argument(
        "--model-at-phase-centre",
        action="store_true",
        help="put the model source at each field's phase centre (the original pipeline's "
        "assumption; right only after rephasing)",
    )
    calibrator.add_argument(
        "--no-rephase", action="store_true", help="do not rephase the calibrator fields"
    )
    calibrator.add_argument("--targets", nargs="+", default=[], help="target MSs to apply to")
    solve = calibrate.add_argument_group("solves")
    solve.add_argument("--refant", default="103", help="name, index or DSA station number")
    solve.add_argument("--prebp-phase", action="store_true", help="(on by default)")
    solve.add_argument("--no-prebp-phase", action="store_true", help="skip the prebp phase solve")
    solve.add_argument("--prebp-solint", help="default 30s")
    solve.add_argument("--prebp-minsnr", type=float, help="default 3")
    solve.add_argument("--prebp-uvrange", help="default >1klambda")
    solve.add_argument("--delay", action="store_true", help="also solve delays (K)")
    solve.add_argument(
        "--bp-combine-field", action="store_true", default=None, help="(on by default)"
    )
    solve.add_argument(
        "--no-bp-combine-field",
        dest="bp_combine_field",
        action="store_false",
        help="one bandpass per field",
    )
    solve.add_argument("--bp-solint", help="default inf")
    solve.add_argument("--bp-minsnr", type=float, help="default 5")
    solve.add_argument("--fillgaps", type=int, help="default 3")
    solve.add_argument("--minblperant", type=int, help="default 4")
    solve.add_argument("--gain-solint", nargs="+", dest="gain_solints", help="default inf 60s")
    solve.add_argument(
        "--gain-calmode", choices=["p", "a", "ap"], help="default ap (sets the flux scale)"
    )
    solve.add_argument("--apply-solint", help="gain interval applied (default 60s)")
    solve.add_argument(
        "--combine-spw", action="store_true", help="solve phases and gains over all SPWs at once"
    )
    solve.add_argument("--fast", action="store_true", help="average before solving")
    solve.add_argument("--timebin", help="with --fast: time averaging, e.g. 30s")
    solve.add_argument("--chanbin", type=int, help="with --fast: channels averaged (default 4)")
    solve.add_argument("--no-apply", action="store_true", help="solve only")


def _overrides(args) -> dict:
    """Nested config overrides from the flags the user actually gave."""
    sections: dict = {}

    def put(section, key, value):
        if value is not None:
            sections.setdefault(section, {})[key] = value

    if args.no_flag:
        put("flagging", "enabled", False)
    put("flagging", "tfcrop", True if args.tfcrop else None)
    put("flagging", "rflag", True if args.rflag else None)
    put("apply", "calwt", True if args.calwt else None)
    if args.retries is not None:
        sections["retries"] = args.retries
    if args.command not in ("calibrate", "bench-spw"):
        return sections
    put("phasing", "rephase", False if args.no_rephase else None)
    put("phasing", "model_position", "phase-centre" if args.model_at_phase_centre else None)
    put("phasing", "primary_beam", False if args.primary_beam is False else None)
    put("prebp", "enabled", False if args.no_prebp_phase else None)
    put("prebp", "solint", args.prebp_solint)
    put("prebp", "minsnr", args.prebp_minsnr)
    put("prebp", "uvrange", args.prebp_uvrange)
    put("delay", "enabled", True if args.delay else None)
    put("bandpass", "combine_field", args.bp_combine_field)
    put("bandpass", "solint", args.bp_solint)
    put("bandpass", "minsnr", args.bp_minsnr)
    put("bandpass", "fillgaps", args.fillgaps)
    put("bandpass", "minblperant", args.minblperant)
    put("gains", "minblperant", args.minblperant)
    put("prebp", "minblperant", args.minblperant)
    put("gains", "solints", args.gain_solints)
    put("gains", "calmode", args.gain_calmode)
    put("apply", "gain_solint", args.apply_solint)
    put("apply", "enabled", False if args.no_apply else None)
    if args.fast or args.timebin or args.chanbin:
        put("fast", "enabled", True)
        put("fast", "timebin", args.timebin)
        put("fast", "chanbin", args.chanbin if args.chanbin else (None if args.timebin else 4))
    if args.combine_spw:
        sections["combine_spw"] = True
    return sections


def _ms_list(args) -> list[str]:
    from dsa110_contimg.ms.reads import require_ms

    given = list(args.ms_positional or []) + list(args.ms_option or [])
    if not given:
        raise ContimgError("no Measurement Set given (MS or --ms)")
    return [str(require_ms(ms)) for ms in given]


def _out_dir(args, ms_list) -> Path:
    """The output directory, checked writable (with the other outputs) before any work."""
    from dsa110_contimg.outputs import check_output_dir, check_output_file

    out = Path(args.out) if args.out else Path(ms_list[0]).absolute().parent
    check_output_dir(out, "--out" if args.out else "output directory (beside the MS)")
    if args.performance_report:
        check_output_file(args.performance_report, "--performance-report")
    cluster_profile(args)
    return out


def _calibrator_fields(args, ms_list, calibrator) -> dict:
    """The fields to solve on in each MS: --field, else those where the beam response is high."""
    from dsa110_contimg.cli import _resolve_fields

    cal_fields = {}
    for ms in ms_list:
        fields = _resolve_fields(args, ms, calibrator, required=False)
        if fields is None:
            from dsa110_contimg.phasing.geometry import field_geometry, select_auto_fields

            fields = select_auto_fields(field_geometry(ms, calibrator), None, args.min_pb_response)
            log.info(
                "%s: solving on fields %s (beam response >= %.2f)",
                ms,
                fields,
                args.min_pb_response,
            )
        cal_fields[ms] = fields
    return cal_fields


def cmd_calibrate(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import plan_calibration
    from dsa110_contimg.ms.reads import require_ms, require_parallel_hands

    config = resolve_config(args.preset, args.config, _overrides(args))
    ms_list = _ms_list(args)
    out = _out_dir(args, ms_list)
    for ms in ms_list:
        require_parallel_hands(ms, "calibration")
    for target in args.targets:
        require_ms(target)
    calibrator = _calibrator_for(args, ms_list[0])
    cal_fields = _calibrator_fields(args, ms_list, calibrator)
    plan = plan_calibration(
        ms_list,
        calibrator,
        cal_fields,
        args.refant,
        config,
        out,
        spw_selection=args.spw,
        targets=args.targets,
    )
    return _run(args, plan, calibrator)


def cmd_bench_spw(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.spw_bench import (
        bench_spw_selections,
        format_spw_bench,
        plot_spw_bench,
    )
    from dsa110_contimg.ms.publish import publish_file
    from dsa110_contimg.qa.runner import default_truth

    config = resolve_config(args.preset, args.config, _overrides(args))
    ms_list = _ms_list(args)
    if len(ms_list) != 1:
        raise ContimgError("bench-spw compares selections on one MS; give exactly one")
    (ms,) = ms_list
    if args.spw:
        raise ContimgError("bench-spw takes its SPW selections from --selections, not --spw")
    if not 0 <= args.tolerance < 1:
        raise ContimgError("--tolerance must be a fraction in [0, 1)")
    calibrator = _calibrator_for(args, ms)
    fields = _calibrator_fields(args, ms_list, calibrator)[ms]
    out = _out_dir(args, ms_list) / f"{Path(ms).name.removesuffix('.ms')}_spw_bench"
    truth = args.truth or default_truth(ms)
    if args.dry_run:
        print(f"would calibrate {ms} with SPW selections {args.selections} into {out}")
        return 0
    with _client_context(args) as client:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
        result = bench_spw_selections(
            ms, args.selections, calibrator, fields, args.refant, config, out, client,
            args.run_dir / "bench-spw", truth=truth, tolerance=args.tolerance,
        )  # fmt: skip
    result["plot"] = plot_spw_bench(result, out / "spw_bench.png")
    result["json_path"] = str(publish_file(out / "spw_bench.json", json.dumps(result, indent=2)))
    if args.json:
        print_json(result)
    else:
        print(format_spw_bench(result))
        print(f"JSON: {result['json_path']}\nplot: {result['plot']}")
    return 0 if all(r["status"] != "failed" for r in result["selections"]) else 1


def cluster_profile(args) -> dict | None:
    """The checked --cluster profile with its options; None with --scheduler."""
    from dsa110_contimg.cluster.profiles import load_profile, parse_cluster_options

    if args.scheduler:
        if args.cluster or args.cluster_option or args.n_workers:
            raise ContimgError(
                "--scheduler uses a running cluster: --cluster, --cluster-option and "
                "--n-workers do not apply to it"
            )
        return None
    overrides = parse_cluster_options(args.cluster_option)
    if args.n_workers:
        overrides["n_workers"] = args.n_workers
    return load_profile(args.cluster or "local", overrides)


def _client_context(args):
    """The Dask client: --scheduler, else the --cluster profile (local by default)."""
    from dsa110_contimg.cluster.profiles import open_profile_client

    profile = cluster_profile(args)
    if profile is None:
        from dsa110_contimg.cluster.client import dask_client

        return dask_client(scheduler_address=args.scheduler)
    return open_profile_client(profile)


def cmd_apply(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.pipeline import plan_apply

    config = resolve_config(args.preset, args.config, _overrides(args))
    ms_list = _ms_list(args)
    out = _out_dir(args, ms_list)
    plan = plan_apply(
        ms_list,
        args.tables,
        config,
        out,
        fields=args.field,
        spw_selection=args.spw,
    )
    return _run(args, plan, None)


def _calibrator_for(args, ms):
    from dsa110_contimg.cli import calibrator_of

    return calibrator_of(args, ms, "the model and the flux scale")


def _run(args, plan, calibrator) -> int:
    from dsa110_contimg.calibration.pipeline import format_summary, run_plan
    from dsa110_contimg.calibration.plan import format_plan

    log.debug("resolved config: %s", json.dumps(plan.config.to_dict()))
    if args.dry_run:
        if args.json:
            print_json(plan.to_dict())
        else:
            print(format_plan(plan))
        return 0
    print(format_plan(plan) if args.verbose else f"plan: {len(plan.observations)} MS")
    with _client_context(args) as client:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)
        summary = run_plan(
            plan,
            client,
            args.run_dir,
            calibrator,
            progress=False if args.no_progress else None,
            performance_report=args.performance_report,
        )
    from dsa110_contimg.qa.runner import qa_of_calibration_run

    reports = qa_of_calibration_run(summary, calibrator, args.run_dir)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
        for report in reports:
            print(report["text"])
            print(f"QA report: {report['report_html']}")
        print(f"summary: {summary['summary_path']}")
    if summary["status"] == "degraded":
        reasons = [
            f"{Path(obs['ms']).name} {reason}"
            for obs in summary["observations"]
            for reason in obs["degraded"]
        ]
        _print_first("degraded", reasons, summary["summary_path"])
        return EXIT_DEGRADED
    if summary["status"] != "ok":
        failures = [
            f"{Path(obs['ms']).name} {f['step']}"
            + (f" spw {f['spw']}" if f["spw"] >= 0 else "")
            + f": {f['error']}"
            for obs in summary["observations"]
            for f in obs["failed"]
        ]
        _print_first("error", failures, summary["summary_path"])
        return 1
    return 0


def _print_first(label: str, lines: list[str], summary_path) -> None:
    """One stderr line: the first of ``lines``, how many more, and where the rest is."""
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    print(
        f"contimg: {label}: {' '.join(lines[0].split())}{more}; see {summary_path}",
        file=sys.stderr,
    )


# A run that finished but lost solutions or SPWs (summary status "degraded").
EXIT_DEGRADED = 3


def build_parser() -> argparse.ArgumentParser:
    from dsa110_contimg.cli import command_parser

    parser, commands = command_parser("python -m dsa110_contimg.calibration.cli", __doc__)
    add_calibration_commands(commands)
    parser.set_defaults(original_spelling=True)
    return parser


def main(argv=None) -> int:
    from dsa110_contimg.cli import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
