"""``contimg image``: DATA and CORRECTED_DATA imaged with tclean on the cluster, compared."""

from __future__ import annotations

import logging
from pathlib import Path

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import (
    add_calibrator_options,
    add_cluster_options,
    add_json_option,
    calibrator_request,
    check_performance_report,
    cluster_choice,
)
from dsa110_contimg.errors import ContimgError

log = logging.getLogger("dsa110_contimg.cli")

_IMAGING_SETTINGS = (
    "niter", "nsigma", "cell_arcsec", "imsize", "pb_limit", "max_imsize", "deconvolver",
    "weighting", "robust",
)  # fmt: skip


def register(commands) -> None:
    image = commands.add_parser(
        "image", help="image DATA and CORRECTED_DATA with tclean and compare them"
    )
    image.add_argument("ms", help="Measurement Set (or calibrated Multi-MS)")
    image.add_argument("--field", help="fields, e.g. 12 or 10~14 (default: all)")
    image.add_argument(
        "--phasecenter", metavar="CENTRE",
        help="image the whole file as one image, every field shifted (into a new MS) to "
        "median-meridian, calibrator (--calibrator), RA,DEC degrees or 'J2000 <ra>deg <dec>deg'",
    )  # fmt: skip
    image.add_argument(
        "--datacolumn", default="both", choices=["data", "corrected", "both"], help="default both"
    )
    image.add_argument("--out", default="images", help="output directory (default ./images)")
    image.add_argument("--truth", help="simulation truth file for the known sources")
    sources = image.add_argument_group(
        "sources to measure (with --cal-flux: the calibrator's flux)"
    )
    add_calibrator_options(sources, "sources to measure when there is no truth file")
    image.add_argument("--niter", type=int, help="CLEAN iterations (default 1000)")
    image.add_argument("--nsigma", type=float, help="CLEAN stops at this many sigma (default 4)")
    image.add_argument("--cell", type=float, dest="cell_arcsec", help="cell, arcsec")
    image.add_argument("--imsize", type=int, help="pixels per side")
    image.add_argument("--pb-limit", type=float, help="image to this beam response (default 0.2)")
    image.add_argument("--max-imsize", type=int, help="refuse larger images (default 4096)")
    image.add_argument("--deconvolver", choices=["hogbom", "multiscale"])
    image.add_argument("--weighting", choices=["briggs", "natural", "uniform"])
    image.add_argument("--robust", type=float, help="Briggs robust (default 0)")
    add_cluster_options(image)
    add_json_option(image, "print the comparison JSON")
    image.set_defaults(func=run_image)


def run_image(args) -> int:
    from dsa110_contimg.cluster.run import open_run
    from dsa110_contimg.imaging.pipeline import format_comparison, run_imaging
    from dsa110_contimg.imaging.plan import ImagingConfig, plan_imaging
    from dsa110_contimg.ms.reads import require_ms
    from dsa110_contimg.outputs import check_output_dir

    settings = {k: getattr(args, k) for k in _IMAGING_SETTINGS if getattr(args, k) is not None}
    check_output_dir(args.out, "--out")
    check_performance_report(args)
    cluster = cluster_choice(args)
    catalog = _sources_to_measure(args)
    shift = None
    if args.phasecenter:
        if args.field:
            raise ContimgError("--phasecenter images every field as one image: drop --field")
        from dsa110_contimg.imaging.plan import parse_phasecenter, plan_whole_file

        calibrator = catalog[0] if calibrator_request(args).given else None
        centre, label = parse_phasecenter(args.phasecenter, require_ms(args.ms), calibrator)
        shift, jobs = plan_whole_file(
            args.ms, centre, label, args.datacolumn, ImagingConfig(**settings), args.out
        )
    else:
        jobs = plan_imaging(
            args.ms, args.field, args.datacolumn, ImagingConfig(**settings), args.out
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    log.info(
        "%d image(s) of %d x %d pixels, %.2f arcsec cells",
        len(jobs),
        jobs[0].imsize,
        jobs[0].imsize,
        jobs[0].cell_arcsec,
    )
    with open_run(cluster, args.run_dir, args.performance_report) as run:
        result = run_imaging(
            jobs, run.client, args.out, run.run_dir, truth_path=args.truth, catalog=catalog,
            shift=shift,
        )  # fmt: skip
    if args.json:
        print_json(result)
    else:
        print(format_comparison(result))
        print(f"comparison: {result['json_path']}")
    return 0


def _sources_to_measure(args) -> list:
    """The catalog (--catalog or the built-in one), with --calibrator's spectrum from --cal-*."""
    from dsa110_contimg.phasing.geometry import choose_calibrator
    from dsa110_contimg.sky.calibrators import load_catalog

    catalog = list(load_catalog(args.catalog))
    request = calibrator_request(args)
    if not request.given:
        if args.cal_flux is not None:
            raise ContimgError(
                "--cal-flux describes a calibrator: give --calibrator or --cal-ra/--cal-dec"
            )
        return catalog
    calibrator = choose_calibrator(args.ms, request, catalog, from_beam=False)
    return [calibrator] + [c for c in catalog if c.name != calibrator.name]
