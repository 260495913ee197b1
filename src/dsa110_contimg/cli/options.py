"""Option groups declared once, and what they become: the library's typed inputs.

Every command that takes a calibrator, fields or a cluster declares them
with the functions here and turns them into a ``CalibratorRequest``,
``FieldChoice`` or ``ClusterChoice`` with the matching function, so an
option means the same in every command.
"""

from __future__ import annotations

import argparse

from dsa110_contimg.errors import ContimgError


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


def add_ms_argument(parser) -> None:
    """One MS, as a positional argument or (the original spelling) ``--ms``."""
    parser.add_argument("ms_positional", nargs="?", metavar="MS", help="Measurement Set")
    parser.add_argument("--ms", dest="ms_option", help="Measurement Set (original spelling)")


def add_calibrator_options(parser, catalog_help="calibrator catalog: CSV or VLA list text"):
    parser.add_argument("--calibrator", help="calibrator name, e.g. 0834+555 or J0834+5534")
    parser.add_argument("--cal-ra", type=float, help="calibrator RA, deg (with --cal-dec)")
    parser.add_argument("--cal-dec", type=float, help="calibrator Dec, deg (with --cal-ra)")
    add_calibrator_flux_options(parser)
    parser.add_argument("--catalog", help=catalog_help)


def add_calibrator_flux_options(parser) -> None:
    parser.add_argument(
        "--cal-flux", type=float, metavar="JY", help="calibrator flux density (over the catalog's)"
    )
    parser.add_argument(
        "--cal-ref-freq", type=float, metavar="HZ", help="frequency of --cal-flux (default: centre)"
    )
    parser.add_argument(
        "--cal-index", type=float, metavar="ALPHA", help="spectral index, S ~ nu^alpha (default 0)"
    )


def add_field_options(parser) -> None:
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


def add_model_beam_option(parser) -> None:
    parser.add_argument(
        "--no-beam",
        dest="primary_beam",
        action="store_false",
        help="model without primary-beam attenuation",
    )


def add_phasing_options(parser) -> None:
    """MS, calibrator, fields and the model's beam: the phase-centre commands."""
    add_ms_argument(parser)
    add_calibrator_options(parser)
    add_field_options(parser)
    add_model_beam_option(parser)


def add_cluster_options(parser, performance_report: bool = True) -> None:
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
    if performance_report:
        cluster.add_argument(
            "--performance-report", metavar="FILE.html", help="write Dask's performance report"
        )


def add_json_option(parser, help_text: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


# From the parsed options to the library's inputs.


def resolve_ms(args) -> str:
    """The one MS of ``add_ms_argument``, checked to be a Measurement Set."""
    from dsa110_contimg.ms.reads import require_ms

    ms = args.ms_option or args.ms_positional
    if not ms:
        raise ContimgError("no Measurement Set given (MS or --ms)")
    return str(require_ms(ms))


def calibrator_request(args):
    from dsa110_contimg.sky.calibrators import CalibratorRequest

    return CalibratorRequest(
        name=getattr(args, "calibrator", None),
        ra_deg=getattr(args, "cal_ra", None),
        dec_deg=getattr(args, "cal_dec", None),
        flux_jy=getattr(args, "cal_flux", None),
        ref_freq_hz=getattr(args, "cal_ref_freq", None),
        spectral_index=getattr(args, "cal_index", None),
    )


def calibrator_of(args, ms, needs_flux: str | None = None, from_beam=True, required=True):
    """The calibrator of the options (or, ``from_beam``, the brightest catalog source)."""
    from dsa110_contimg.phasing.geometry import choose_calibrator
    from dsa110_contimg.sky.calibrators import load_catalog

    return choose_calibrator(
        ms, calibrator_request(args), load_catalog(args.catalog), needs_flux, from_beam, required
    )


def field_choice(args, unset: str = "all"):
    from dsa110_contimg.phasing.geometry import FieldChoice

    return FieldChoice(
        selection=args.field,
        auto=args.auto_fields,
        window=args.field_window,
        min_response=args.min_pb_response,
        unset=unset,
        auto_over_selection=getattr(args, "original_spelling", False),
    )


def cluster_choice(args):
    """The checked cluster options (a profile that does not exist is refused here)."""
    from dsa110_contimg.cluster.run import ClusterChoice

    choice = ClusterChoice(
        scheduler=args.scheduler,
        profile=getattr(args, "cluster", None),
        options=tuple(getattr(args, "cluster_option", None) or ()),
        n_workers=args.n_workers,
    )
    choice.checked_profile()
    return choice


def check_performance_report(args) -> None:
    from dsa110_contimg.outputs import check_output_file

    if getattr(args, "performance_report", None):
        check_output_file(args.performance_report, "--performance-report")
