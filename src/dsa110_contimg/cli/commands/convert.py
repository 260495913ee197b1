"""``contimg convert``: the correlator's UVH5 subband files to one MS per observation."""

from __future__ import annotations

import sys

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import (
    add_cluster_options,
    add_json_option,
    check_performance_report,
    cluster_choice,
)
from dsa110_contimg.errors import ContimgError


def register(commands) -> None:
    convert = commands.add_parser(
        "convert", help="UVH5 subband files to Measurement Sets, one per observation"
    )
    convert.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="subband files (<time>_sbNN.hdf5), directories of them, or lists of them",
    )  # fmt: skip
    convert.add_argument(
        "--out", required=True, help="output directory (<time>.ms per observation) or X.ms"
    )
    convert.add_argument(
        "--allow-partial", action="store_true",
        help="convert an observation with missing subbands (default: skip it)",
    )  # fmt: skip
    convert.add_argument(
        "--time-tolerance", type=float, default=0.0, metavar="SECONDS",
        help="one observation: time stamps this close (default 0: equal)",
    )  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace existing MSs")
    convert.add_argument("--dry-run", action="store_true", help="list the observations only")
    add_cluster_options(convert)
    add_json_option(convert, "print the results as JSON")
    convert.set_defaults(func=run_convert)


def run_convert(args) -> int:
    from dsa110_contimg.cluster.run import open_run
    from dsa110_contimg.outputs import check_output_dir
    from dsa110_contimg.raw.convert import format_plan, plan_conversion, run_conversion

    if args.time_tolerance < 0:
        raise ContimgError("--time-tolerance must not be negative")
    check_performance_report(args)
    cluster = cluster_choice(args)
    plan = plan_conversion(
        args.inputs, args.out, args.allow_partial, args.time_tolerance, args.overwrite
    )
    print(format_plan(plan), flush=True)
    if args.dry_run:
        return 0
    refusals = [f"{name}: {reason}" for name, reason in plan.refused]
    results = []
    if plan.jobs:
        directory = {job.output_ms.rsplit("/", 1)[0] for job in plan.jobs}
        for folder in directory:
            check_output_dir(folder, "--out")
        with open_run(cluster, args.run_dir, args.performance_report) as run:
            results = run_conversion(plan, run.client)
    for result in results:
        if result.get("error"):
            refusals.append(result["error"])
        else:
            print(f"{result['observation']}: {result['ms']}")
            for line in result["checks"]:
                print(f"  {line}")
    if args.json:
        print_json({"converted": results, "refused": [list(r) for r in plan.refused]})
    if refusals:
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        print(f"contimg: error: {refusals[0]}{more}", file=sys.stderr)
        for line in refusals[1:]:
            print(f"contimg: also refused: {line}", file=sys.stderr)
        return 2
    return 0
