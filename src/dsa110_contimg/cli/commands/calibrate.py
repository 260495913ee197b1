"""``calibrate``, ``bench-spw``, ``apply``: solve and apply on the cluster, per SPW."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dsa110_contimg.cli.app import EXIT_DEGRADED, print_first, print_json
from dsa110_contimg.cli.options import (
    add_calibrator_options,
    add_cluster_options,
    add_field_options,
    add_json_option,
    add_model_beam_option,
    calibrator_of,
    check_performance_report,
    cluster_choice,
    field_choice,
    whole_number,
)
from dsa110_contimg.errors import ContimgError

log = logging.getLogger("dsa110_contimg.cli")

ORIGINAL_SPELLING = """The original pipeline's command lines, unchanged::

    python -m dsa110_contimg.calibration.cli calibrate --ms X.ms --field 0 --refant 103 \\
        --auto-fields --model-source catalog --bp-combine-field --combine-spw \\
        --prebp-phase --prebp-minsnr 3.0
    python -m dsa110_contimg.calibration.cli apply --ms target.ms --field N \\
        --tables A_bpcal A_2gcal
"""


def register(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="solve on the calibrator (prebp phase, bandpass, gains) and apply, per SPW on Dask",
    )
    _add_input_options(calibrate)
    _add_recipe_options(calibrate)
    calibrate.set_defaults(func=run_calibrate)

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
    bench.set_defaults(func=run_bench_spw)

    apply = commands.add_parser(
        "apply", help="apply caltables to MSs (a calibrated Multi-MS per MS, DATA untouched)"
    )
    _add_input_options(apply)
    apply.add_argument("--field", help="fields to calibrate, e.g. 3 or 0~5 (default: all)")
    apply.add_argument("--tables", nargs="+", required=True, help="caltables, applied in order")
    apply.set_defaults(func=run_apply)


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
    add_json_option(parser, "print the run summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-flag", action="store_true", help="do not flag autocorrelations and zeros"
    )
    parser.add_argument("--tfcrop", action="store_true", help="also flag RFI with tfcrop")
    parser.add_argument("--rflag", action="store_true", help="also flag RFI with rflag")
    parser.add_argument("--calwt", action="store_true", help="calibrate the weights too")
    add_cluster_options(parser)


def _add_recipe_options(calibrate) -> None:
    calibrator = calibrate.add_argument_group("calibrator and fields")
    add_calibrator_options(calibrator)
    add_field_options(calibrator)
    add_model_beam_option(calibrator)
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
    solve.add_argument(
        "--engine", choices=["casa", "native"],
        help="who solves: native (this project's kernels, CASA tables out; the default) or "
        "casa (gaincal, bandpass, applycal)",
    )  # fmt: skip


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
    if args.engine:
        sections["engine"] = args.engine
    return sections


def _ms_list(args) -> list[str]:
    from dsa110_contimg.ms.reads import require_ms

    given = list(args.ms_positional or []) + list(args.ms_option or [])
    if not given:
        raise ContimgError("no Measurement Set given (MS or --ms)")
    return [str(require_ms(ms)) for ms in given]


def _out_dir(args, ms_list) -> Path:
    """The output directory, checked writable (with the other outputs) before any work."""
    from dsa110_contimg.outputs import check_output_dir

    out = Path(args.out) if args.out else Path(ms_list[0]).absolute().parent
    check_output_dir(out, "--out" if args.out else "output directory (beside the MS)")
    check_performance_report(args)
    cluster_choice(args)
    return out


def _solve_fields(args, ms_list, calibrator) -> dict:
    """The fields to solve on in each MS: --field, else where the beam response is high."""
    from dsa110_contimg.phasing.geometry import choose_fields

    choice = field_choice(args, unset="auto")
    return {ms: choose_fields(ms, calibrator, choice) for ms in ms_list}


def _calibrator(args, ms):
    return calibrator_of(args, ms, "the model and the flux scale")


def run_calibrate(args) -> int:
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
    calibrator = _calibrator(args, ms_list[0])
    plan = plan_calibration(
        ms_list,
        calibrator,
        _solve_fields(args, ms_list, calibrator),
        args.refant,
        config,
        out,
        spw_selection=args.spw,
        targets=args.targets,
    )
    return _run(args, plan, calibrator)


def run_bench_spw(args) -> int:
    from dsa110_contimg.calibration.config import resolve_config
    from dsa110_contimg.calibration.spw_bench import (
        bench_spw_selections,
        format_spw_bench,
        plot_spw_bench,
    )
    from dsa110_contimg.cluster.run import open_run
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
    calibrator = _calibrator(args, ms)
    fields = _solve_fields(args, ms_list, calibrator)[ms]
    out = _out_dir(args, ms_list) / f"{Path(ms).name.removesuffix('.ms')}_spw_bench"
    truth = args.truth or default_truth(ms)
    if args.dry_run:
        print(f"would calibrate {ms} with SPW selections {args.selections} into {out}")
        return 0
    with open_run(cluster_choice(args), args.run_dir, args.performance_report) as run:
        result = bench_spw_selections(
            ms, args.selections, calibrator, fields, args.refant, config, out, run,
            truth=truth, tolerance=args.tolerance,
        )  # fmt: skip
    result["plot"] = plot_spw_bench(result, out / "spw_bench.png")
    result["json_path"] = str(publish_file(out / "spw_bench.json", json.dumps(result, indent=2)))
    if args.json:
        print_json(result)
    else:
        print(format_spw_bench(result))
        print(f"JSON: {result['json_path']}\nplot: {result['plot']}")
    return 0 if all(r["status"] != "failed" for r in result["selections"]) else 1


def run_apply(args) -> int:
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


def _in_thread(function, *args):
    """``function(*args)`` started in a thread of its own: a future of its result.

    Any dask computation in it uses local threads, never the cluster closing meanwhile.
    """
    import threading
    from concurrent.futures import Future

    import dask

    future = Future()

    def work():
        try:
            with dask.config.set(scheduler="threads"):
                future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits for it
            future.set_exception(error)

    threading.Thread(target=work, name=f"{function.__name__}", daemon=True).start()
    return future


def _run(args, plan, calibrator) -> int:
    from dsa110_contimg.calibration.pipeline import run_plan
    from dsa110_contimg.calibration.plan import format_plan
    from dsa110_contimg.calibration.summary import format_summary
    from dsa110_contimg.cluster.run import open_run
    from dsa110_contimg.qa.runner import qa_of_calibration_run

    log.debug("resolved config: %s", json.dumps(plan.config.to_dict()))
    if args.dry_run:
        if args.json:
            print_json(plan.to_dict())
        else:
            print(format_plan(plan))
        return 0
    print(format_plan(plan) if args.verbose else f"plan: {len(plan.observations)} MS")
    progress = False if args.no_progress else None
    with open_run(cluster_choice(args), args.run_dir, args.performance_report, progress) as run:
        summary = run_plan(plan, run.client, run.run_dir, calibrator, progress=run.progress)
        # the report is drawn while the cluster closes (its workers stopping take a second)
        reporting = _in_thread(qa_of_calibration_run, summary, calibrator, args.run_dir)
    reports = reporting.result()
    if args.json:
        print_json({**summary.to_json(), "summary_path": summary.summary_path})
    else:
        print(format_summary(summary))
        for report in reports:
            print(report["text"])
            print(f"QA report: {report['report_html']}")
        print(f"summary: {summary.summary_path}")
    if summary.status == "degraded":
        print_first("degraded", summary.degraded_lines(), summary.summary_path)
        return EXIT_DEGRADED
    if summary.status != "ok":
        print_first("error", summary.failure_lines(), summary.summary_path)
        return 1
    return 0
