"""Image DATA and CORRECTED_DATA as Dask tasks, measure, compare, plot.

Each (MS, field, column) is one tclean task in a single-threaded worker
process writing its own image set; tasks only read the MS, so they run side
by side. Metrics are computed in the task from the exported FITS images.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import dask
import numpy as np

from dsa110_contimg.casa import tasks
from dsa110_contimg.imaging import metrics_kernels as k
from dsa110_contimg.imaging.metrics import (
    image_metrics,
    improvement,
    known_sources,
    read_fits_pixels,
)
from dsa110_contimg.imaging.plan import WHOLE_FILE, ImageJob, ShiftJob
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.ms.reads import main_columns, read_subtable

log = logging.getLogger(__name__)

SCHEMA = "dsa110_contimg.image_comparison"
VERSION = 1
# Longest side of each panel of the comparison PNG, in pixels: block maxima
# no larger than the panel drawn (0.86 x 5.2 inches at 90 dpi), shown without
# interpolation, so a point source keeps its peak instead of being averaged
# away when the figure is resampled.
DISPLAY_PX = 400
# Dask priorities (higher first). Longest first: DATA images, whose CLEAN
# usually runs to niter on uncalibrated sidelobes, start before the CORRECTED
# ones, so the shorter tasks fill the end and no worker idles long while the
# other finishes; a field's comparison (under a second) runs as soon as it can.
TASK_PRIORITY = {"compare": 2, "data": 1, "corrected": 0}


def tclean_parameters(job: ImageJob) -> dict:
    c = job.config
    parameters = dict(
        field="" if job.field == WHOLE_FILE else str(job.field),
        datacolumn=job.column,
        imsize=job.imsize,
        cell=f"{job.cell_arcsec:.4f}arcsec",
        stokes="I",
        specmode="mfs",
        gridder="standard",
        deconvolver=c.deconvolver,
        weighting=c.weighting,
        robust=c.robust,
        niter=c.niter,
        nsigma=c.nsigma,
        pblimit=c.pb_limit,
    )
    if c.deconvolver == "multiscale":
        parameters["scales"] = list(c.scales)
    return parameters


def shift_phase_centre(shift: ShiftJob, log_dir) -> str:
    """One Dask task: every field of the input phase-shifted into a new MS (DATA and, when
    present, CORRECTED_DATA); the input is only read."""
    log_file = str(Path(log_dir) / "casa" / f"{Path(shift.output_ms).name}-phaseshift.log")
    n_fields = read_subtable(shift.input_ms, "FIELD", columns=["NAME"]).sizes["row"]
    columns = "all" if "CORRECTED_DATA" in main_columns(shift.input_ms) else "data"
    with publish_directory(shift.output_ms) as partial:
        tasks.run_phaseshift(
            shift.input_ms, str(partial), dict.fromkeys(range(n_fields), shift.direction),
            log_file=log_file, datacolumn=columns,
        )  # fmt: skip
    return shift.output_ms


def image_and_measure(job: ImageJob, sources, log_dir, shifted=None) -> dict:
    """One Dask task: tclean (and FITS export), then the image metrics.

    ``shifted`` is the phase-shifted MS the job images (a dependency only).
    """
    log_file = str(Path(log_dir) / "casa" / f"{Path(job.output_dir).name}.log")
    started_unix = time.time()
    call = tasks.run_tclean(job.ms, job.output_dir, log_file, **tclean_parameters(job))
    metrics = image_metrics(
        f"{job.imagename}.image.fits",
        f"{job.imagename}.residual.fits",
        sources,
        job.pointing_deg,
        job.config.pb_limit,
        job.dish_diameter_m,
    )
    return {
        "ms": job.ms,
        "field": job.field,
        "label": job.label,
        "column": job.column,
        "image": f"{job.imagename}.image",
        "fits": f"{job.imagename}.image.fits",
        "imsize": job.imsize,
        "started_unix": started_unix,
        "tclean_seconds": call.seconds,
        **metrics,
    }


def compare_field(data: dict, corrected: dict, png: str) -> dict:
    """One Dask task per field: the DATA -> CORRECTED improvement and the side-by-side PNG."""
    plot_comparison(data, corrected, png)
    return {"ms": data["ms"], "field": data["field"], "label": data["label"], "png": png,
            **improvement(data, corrected)}  # fmt: skip


def run_imaging(
    jobs: list[ImageJob], client, out_dir, log_dir, truth_path=None, catalog=None, shift=None
) -> dict:
    """Run every job on ``client``; write ``image_comparison.json`` and PNGs; return it.

    One graph: a tclean task per job (DATA images first), and per field imaged
    from both columns a comparison task that runs as soon as its two images
    exist (so plots are drawn while other fields are still being imaged).
    """
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    (Path(log_dir) / "casa").mkdir(parents=True, exist_ok=True)
    sources_by_ms = {}
    for job in jobs:
        if job.ms not in sources_by_ms:
            measured_ms = shift.input_ms if shift is not None else job.ms
            sources_by_ms[job.ms] = known_sources(measured_ms, truth_path, catalog)
    shifted = None
    if shift is not None:
        shifted = dask.delayed(shift_phase_centre, pure=False)(
            shift, str(log_dir), dask_key_name=f"phaseshift-{Path(shift.output_ms).name}"
        )
    image_and_measure_task = dask.delayed(image_and_measure, pure=False)
    image_tasks = {}
    for job in jobs:
        with dask.annotate(priority=TASK_PRIORITY[job.column]):
            image_tasks[(job.ms, job.field, job.column)] = image_and_measure_task(
                job,
                sources_by_ms[job.ms][0],
                str(log_dir),
                shifted,
                dask_key_name=f"tclean-{Path(job.output_dir).name}",
            )
    compare_tasks = []
    for job in jobs:
        corrected = image_tasks.get((job.ms, job.field, "corrected"))
        if job.column != "data" or corrected is None:
            continue
        name = Path(job.output_dir).name.removesuffix("_data")
        with dask.annotate(priority=TASK_PRIORITY["compare"]):
            compare_tasks.append(
                dask.delayed(compare_field, pure=False)(
                    image_tasks[(job.ms, job.field, "data")],
                    corrected,
                    str(out_dir / f"{name}_compare.png"),
                    dask_key_name=f"compare-{name}",
                )
            )
    started = time.perf_counter()
    finished = client.gather(client.compute([*image_tasks.values(), *compare_tasks]))
    images, comparisons = finished[: len(image_tasks)], finished[len(image_tasks) :]
    wall = time.perf_counter() - started
    result = {
        "schema": SCHEMA,
        "version": VERSION,
        "phase_shift": None
        if shift is None
        else {
            "input_ms": shift.input_ms,
            "output_ms": shift.output_ms,
            "centre_deg": list(shift.centre_deg),
            "phasecenter": shift.label,
        },
        "sources_from": {ms: origin for ms, (_, origin) in sources_by_ms.items()},
        "wall_seconds": wall,
        "images": images,
        "comparisons": comparisons,
    }
    path = out_dir / "image_comparison.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    result["json_path"] = str(path)
    return result


def plot_comparison(data: dict, corrected: dict, png) -> None:
    """DATA and CORRECTED side by side on one colour scale, metrics in the titles.

    Drawn on a bare Agg figure with fixed panel positions: pyplot's figure
    manager, axis ticks and constrained layout cost more than the drawing.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    images = [k.block_maxima(read_fits_pixels(m["fits"]), DISPLAY_PX) for m in (data, corrected)]
    vmax = 0.5 * max(data["peak_jy"], corrected["peak_jy"])
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax, clip=True)
    figure = Figure(figsize=(11, 5.2))
    FigureCanvasAgg(figure)
    for left, image, m in zip((0.01, 0.455), images, (data, corrected), strict=True):
        axis = figure.add_axes((left, 0.02, 0.43, 0.86))
        shown = axis.imshow(
            image, origin="lower", cmap="inferno", norm=norm, interpolation="nearest"
        )
        coherence = "" if m["coherence"] is None else f", coherence {m['coherence']:.2f}"
        axis.set_title(
            f"{m['column'].upper()} {m['label']}\n"
            f"rms {1e3 * m['rms_jy']:.2f} mJy, peak {m['peak_jy']:.3f} Jy, "
            f"DR {m['dynamic_range']:.0f}{coherence}",
            fontsize=9,
        )
        axis.set_axis_off()
    colorbar_axis = figure.add_axes((0.905, 0.1, 0.015, 0.7))
    # ticks evenly spaced on the square-root scale, so none crowd at the top
    ticks = vmax * np.linspace(0.0, 1.0, 6) ** 2
    figure.colorbar(shown, cax=colorbar_axis, ticks=ticks, format="%.3g", label="Jy/beam")
    partial = Path(f"{png}.partial")  # renamed into place: no half-written PNG
    figure.savefig(partial, dpi=90, format="png")
    partial.replace(png)


def format_comparison(result: dict) -> str:
    lines = [
        f"{'image':34s} {'rms mJy':>8s} {'peak Jy':>8s} {'DR':>7s} {'coher.':>7s} {'flux err':>9s}"
    ]
    for i in result["images"]:
        name = Path(i["fits"]).parent.name
        coherence = "-" if i["coherence"] is None else f"{i['coherence']:.3f}"
        error = (
            "-" if i["flux_error_brightest"] is None else f"{100 * i['flux_error_brightest']:+.1f}%"
        )
        lines.append(
            f"{name:34s} {1e3 * i['rms_jy']:8.2f} {i['peak_jy']:8.3f} "
            f"{i['dynamic_range']:7.0f} {coherence:>7s} {error:>9s}"
        )
    for c in result["comparisons"]:
        line = (
            f"{c['label']}: noise {c['noise_ratio']:.2f}x lower, dynamic range "
            f"{c['dynamic_range_ratio']:.2f}x higher"
        )
        if "coherence_after" in c:
            line += f", coherence {c['coherence_before']:.2f} -> {c['coherence_after']:.2f}"
        lines.append(line + f"  ({c['png']})")
    return "\n".join(lines)
