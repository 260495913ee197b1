"""``check-phasing``, ``rephase``, ``write-model``: the phase centre and the calibrator model."""

from __future__ import annotations

import logging
from pathlib import Path

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import (
    add_cluster_options,
    add_json_option,
    add_phasing_options,
    calibrator_of,
    cluster_choice,
    field_choice,
    resolve_ms,
)
from dsa110_contimg.errors import ContimgError

log = logging.getLogger("dsa110_contimg.cli")


def register(commands) -> None:
    check = commands.add_parser(
        "check-phasing", help="is the MS phased to the calibrator? is MODEL_DATA right?"
    )
    add_phasing_options(check)
    add_json_option(check, "print JSON (schema in README)")
    check.add_argument("--geometry-only", action="store_true", help="skip visibility metrics")
    check.set_defaults(func=run_check_phasing)

    rephase = commands.add_parser(
        "rephase", help="shift calibrator fields to the calibrator (new MS) and write the model"
    )
    add_phasing_options(rephase)
    rephase.add_argument("--out", help="rephased MS (default <ms>_<calibrator>.ms beside it)")
    rephase.add_argument("--overwrite", action="store_true")
    rephase.add_argument(
        "--no-model", dest="write_model", action="store_false", help="do not write MODEL_DATA"
    )
    rephase.add_argument("--dry-run", action="store_true", help="print the plan only")
    add_cluster_options(rephase, performance_report=False)
    rephase.set_defaults(func=run_rephase)

    model = commands.add_parser("write-model", help="write MODEL_DATA for the calibrator")
    add_phasing_options(model)
    model.set_defaults(func=run_write_model)


def run_check_phasing(args) -> int:
    from dsa110_contimg.phasing.check import check_phasing, format_report
    from dsa110_contimg.phasing.geometry import choose_fields

    ms = resolve_ms(args)
    calibrator = calibrator_of(args, ms, from_beam=False)
    fields = choose_fields(ms, calibrator, field_choice(args))
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


def run_rephase(args) -> int:
    import dataclasses

    from dsa110_contimg.cluster.run import open_run
    from dsa110_contimg.phasing.check import format_report
    from dsa110_contimg.phasing.geometry import choose_fields
    from dsa110_contimg.phasing.rephase import plan_rephase, rephase_and_model

    ms = resolve_ms(args)
    calibrator = calibrator_of(args, ms, "the model" if args.write_model else None, from_beam=False)
    fields = choose_fields(ms, calibrator, field_choice(args, unset="refuse"))
    cluster = cluster_choice(args)
    if not (cluster.scheduler or cluster.profile or cluster.n_workers):
        cluster = dataclasses.replace(cluster, n_workers=1)  # one phaseshift task
    plan = plan_rephase(ms, calibrator, fields, args.out)
    if args.out and Path(args.out).exists() and not args.overwrite and not plan.already_phased:
        raise ContimgError(f"{args.out} already exists; pass --overwrite to replace it")
    log.info("rephase plan: %s", plan)
    if args.dry_run:
        print(plan)
        return 0
    with open_run(cluster, args.run_dir, announce=False) as run:
        report = rephase_and_model(
            plan,
            calibrator,
            run.client,
            write_model=args.write_model,
            primary_beam=args.primary_beam,
            log_file=str(run.run_dir / "casa-phaseshift.log"),
        )
    print(format_report(report))
    print(f"rephased MS: {plan.output_ms}")
    return 0


def run_write_model(args) -> int:
    import dask

    from dsa110_contimg import casa_env
    from dsa110_contimg.ms.reads import require_parallel_hands
    from dsa110_contimg.phasing.geometry import choose_fields
    from dsa110_contimg.phasing.model import add_model_write_graph

    ms = resolve_ms(args)
    require_parallel_hands(ms, "a calibrator model")
    calibrator = calibrator_of(args, ms, "the model", from_beam=False)
    choose_fields(ms, calibrator, field_choice(args))
    with casa_env.casa_output_to_log():
        dask.compute(add_model_write_graph(ms, calibrator, primary_beam=args.primary_beam))
    print(f"MODEL_DATA of {ms} written for {calibrator.name} (every field, its own phase centre)")
    return 0
