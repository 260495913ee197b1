"""Imaging DATA vs CORRECTED: metrics against synthetic images and a calibrated observation."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from casacore.tables import table

from conftest import SOLVE_FIELDS, one_error_line
from dsa110_contimg.calibration.config import resolve_config
from dsa110_contimg.calibration.pipeline import plan_calibration, run_plan
from dsa110_contimg.casa import tasks
from dsa110_contimg.cluster import dask_client
from dsa110_contimg.imaging import metrics_kernels as k
from dsa110_contimg.imaging.metrics import image_metrics
from dsa110_contimg.imaging.pipeline import run_imaging
from dsa110_contimg.imaging.plan import ImagingConfig, plan_imaging
from dsa110_contimg.phasing.geometry import choose_fields
from dsa110_contimg.simulate.truth import load_truth
from dsa110_contimg.sky.beam import airy_power_response
from dsa110_contimg.sky.calibrators import lookup_calibrator
from dsa110_contimg.sky.coordinates import angular_separation
from dsa110_contimg.sky.sources import PointSource

pytestmark = pytest.mark.slow  # builds or calibrates whole observations

CAL = lookup_calibrator("0834+555")


def gaussian(shape, x, y, fwhm_px, angle=0.3, ratio=0.6):
    yy, xx = np.indices(shape, dtype=float)
    dx, dy = xx - x, yy - y
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    sigma = fwhm_px / 2.3548
    return np.exp(-0.5 * ((u / sigma) ** 2 + (v / (ratio * sigma)) ** 2))


def test_fitted_peak_is_exact_for_an_off_pixel_gaussian():
    image = 2.5 * gaussian((64, 64), 30.37, 21.81, fwhm_px=3.2)
    assert k.peak_near(image, 30.37, 21.81, 3) < 2.45  # the brightest pixel reads low
    assert k.fitted_peak_near(image, 30.37, 21.81, 3) == pytest.approx(2.5, rel=1e-6)
    assert np.isnan(k.fitted_peak_near(np.full((8, 8), np.nan), 4, 4, 2))


def test_robust_rms_ignores_sources_and_blank_pixels():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 0.003, (400, 400))
    image[:40] = np.nan
    image += 5.0 * gaussian(image.shape, 200, 200, 4)
    mask = k.source_mask(image.shape, [(200, 200)], 12)
    assert k.robust_rms(image, exclude=mask) == pytest.approx(0.003, rel=0.03)
    assert np.std(image[np.isfinite(image)]) > 0.01  # a plain std would be fooled


def test_block_maxima_keep_point_sources_and_blank_blocks():
    rng = np.random.default_rng(2)
    image = rng.normal(0, 0.01, (103, 97)).astype(np.float32)
    image[50, 60] = 7.0  # one bright pixel
    image[:8, :8] = np.nan  # a blank corner
    image[20, 30] = np.inf
    shrunk = k.block_maxima(image, 25)  # blocks of 5 x 5 (103 / 25 -> 5), edges dropped
    assert shrunk.shape == (20, 19)
    for by in range(20):
        for bx in range(19):
            block = image[5 * by : 5 * by + 5, 5 * bx : 5 * bx + 5]
            finite = block[np.isfinite(block)]
            expected = finite.max() if finite.size else np.nan
            np.testing.assert_equal(shrunk[by, bx], expected)
    assert shrunk[10, 12] == np.float32(7.0)
    assert np.isnan(shrunk[0, 0])
    unshrunk = k.block_maxima(image, 200)  # small enough already: finite pixels as they were
    assert np.array_equal(unshrunk, np.where(np.isfinite(image), image, np.nan), equal_nan=True)


def write_fits(path, data, beam_deg, cell_deg, centre=(150.0, 55.0), freq=1.4e9):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = centre
    wcs.wcs.crpix = [data.shape[1] / 2 + 1, data.shape[0] / 2 + 1]
    wcs.wcs.cdelt = [-cell_deg, cell_deg]
    header = wcs.to_header()
    header["BMAJ"] = beam_deg
    header["BMIN"] = beam_deg
    header["CRVAL3"] = freq
    fits.writeto(path, data.astype(np.float32), header, overwrite=True)
    return wcs


def test_image_metrics_against_a_synthetic_image(tmp_path):
    """Known noise, known sources through a known primary beam: every metric recovered."""
    rng = np.random.default_rng(3)
    shape, cell_deg, beam_px, sigma = (512, 512), 5 / 3600, 3.1, 0.002
    pointing = (150.0, 55.0)
    sources = [
        PointSource("a", 150.21, 55.13, 0.8, 1.4e9, -0.7),
        PointSource("b", 149.70, 54.88, 0.3, 1.4e9, 0.0),
    ]
    residual = rng.normal(0, sigma, shape)
    wcs = write_fits(tmp_path / "residual.fits", residual, beam_px * cell_deg, cell_deg)
    image = residual.copy()
    for s in sources:
        x, y = wcs.world_to_pixel_values(s.ra_deg, s.dec_deg)
        offset = angular_separation(*np.radians([*pointing, s.ra_deg, s.dec_deg]))
        image += (
            s.flux_jy * airy_power_response(offset, 1.4e9) * gaussian(shape, x, y, beam_px, 0, 1)
        )
    write_fits(tmp_path / "image.fits", image, beam_px * cell_deg, cell_deg)
    metrics = image_metrics(
        tmp_path / "image.fits",
        tmp_path / "residual.fits",
        sources,
        pointing,
        pb_limit=0.1,
        dish_diameter_m=4.65,
    )
    assert metrics["rms_jy"] == pytest.approx(sigma, rel=0.05)
    assert metrics["beam_major_arcsec"] == pytest.approx(beam_px * 5)
    by_name = {s["name"]: s for s in metrics["sources"]}
    for s in sources:
        assert by_name[s.name]["pb_corrected_flux_jy"] == pytest.approx(s.flux_jy, rel=0.02)
        assert by_name[s.name]["coherence"] == pytest.approx(1.0, abs=0.02)
    assert metrics["dynamic_range"] == pytest.approx(metrics["peak_jy"] / metrics["rms_jy"])


@pytest.fixture(scope="module")
def calibrated_target(make_observation, tmp_path_factory, client):
    """A calibrator transit and a target file two hours later with the same instrument gains."""
    common = {"sefd_jy": 1000.0, "drift_phase_rms_deg": 0.0, "n_field_sources": 6, "seed": 5}
    cal = make_observation("small", stem="cal", **common)
    target = make_observation("small", stem="target", start_time="2025-01-15T10:45:14", **common)
    out = tmp_path_factory.mktemp("imaging")
    fields = choose_fields(cal, CAL, SOLVE_FIELDS)
    config = resolve_config()
    plan = plan_calibration(
        [str(cal)], CAL, {str(cal): fields}, "103", config, out, targets=[str(target)]
    )
    summary = run_plan(plan, client, out / "run", CAL, progress=False)
    assert summary.status == "ok"
    mms = summary.observations[1].output_mms
    jobs = plan_imaging(mms, "12", "both", ImagingConfig(), out / "images")
    result = run_imaging(jobs, client, out / "images", out / "run", load_truth_path(target))
    natural = plan_imaging(
        mms, "12", "corrected", ImagingConfig(weighting="natural"), out / "natural"
    )
    natural_result = run_imaging(
        natural, client, out / "natural", out / "run", load_truth_path(target)
    )
    return target, mms, result, natural_result


def load_truth_path(ms):
    return f"{ms}.truth.npz"


def test_corrected_image_recovers_fluxes_and_beats_data(calibrated_target):
    target, mms, result, _ = calibrated_target
    images = {i["column"]: i for i in result["images"]}
    corrected, data = images["corrected"], images["data"]
    bright = [
        s for s in corrected["sources"] if s["expected_apparent_jy"] > 30 * corrected["rms_jy"]
    ]
    assert len(bright) >= 2
    for s in bright:
        assert abs(s["flux_error"]) < 0.05, s
    # The default recipe sets the flux scale (amplitude and phase gains): the brightest
    # source of the calibrated target comes out within 2 % of the truth.
    brightest = max(bright, key=lambda s: s["expected_apparent_jy"])
    assert abs(brightest["flux_error"]) < 0.02, brightest
    (comparison,) = result["comparisons"]
    assert comparison["noise_ratio"] > 1.2
    assert comparison["dynamic_range_ratio"] > 1.5
    assert comparison["coherence_after"] > 0.9
    assert comparison["coherence_before"] < 0.8
    assert abs(comparison["flux_error_after"]) < abs(comparison["flux_error_before"])
    assert data["coherence"] == comparison["coherence_before"]
    saved = json.loads(open(result["json_path"]).read())
    assert saved["schema"] == "dsa110_contimg.image_comparison"
    check_comparison_png(comparison["png"])


def check_comparison_png(png):
    """DATA left, CORRECTED right on one colour scale: sources brighter, background darker.

    Each pixel of a panel is mapped back to its place on the colour map
    (0 = zero flux, 1 = the top of the shared scale).
    """
    from matplotlib import colormaps
    from matplotlib.image import imread

    pixels = imread(png)[::-1, :, :3]  # rows from the bottom, as figure fractions count
    height, width, _ = pixels.shape
    assert (width, height) == (990, 468)  # 11 x 5.2 inches at 90 dpi
    lut = colormaps["inferno"](np.linspace(0, 1, 256))[:, :3]
    scale_positions = []
    for left in (0.01, 0.455):  # the panels' figure positions
        rows = slice(int(0.05 * height), int(0.85 * height))
        panel = pixels[rows, int((left + 0.03) * width) : int((left + 0.4) * width)]
        distance = np.abs(panel.reshape(-1, 3)[:, None, :] - lut[None]).max(axis=2)
        on_map = distance.min(axis=1) < 0.03  # not the white outside the primary beam
        assert on_map.mean() > 0.5, "a blank panel"
        scale_positions.append(distance.argmin(axis=1)[on_map] / 255)
        title = pixels[int(0.89 * height) :, int(left * width) : int((left + 0.43) * width)]
        assert (title < 0.5).any(), "no title text above the panel"
    data, corrected = scale_positions
    assert np.median(data) > np.median(corrected)  # the noisier background before calibration
    assert (corrected > 0.5).sum() > (data > 0.5).sum() >= 1  # point sources regain their peak
    assert corrected.max() == 1.0  # the brightest calibrated source reaches the top


def test_data_images_start_before_corrected_ones(calibrated_target, tmp_path):
    """Longest first: with one worker, every DATA tclean starts before any CORRECTED one."""
    _, mms, _, _ = calibrated_target
    jobs = plan_imaging(mms, "11~12", "both", ImagingConfig(imsize=128, niter=10), tmp_path)
    with dask_client(n_workers=1) as client:
        result = run_imaging(jobs, client, tmp_path, tmp_path / "run")
    starts = {c: [i["started_unix"] for i in result["images"] if i["column"] == c]
              for c in ("data", "corrected")}  # fmt: skip
    assert len(starts["data"]) == len(starts["corrected"]) == 2
    assert max(starts["data"]) < min(starts["corrected"])
    assert len(result["comparisons"]) == 2


def test_natural_weighting_noise_matches_the_radiometer_equation(calibrated_target):
    from casacore.tables import table, taql

    target, mms, _, natural = calibrated_target
    sigma_part = np.array(load_truth(target).meta["noise_sigma_jy"])
    with table(mms, ack=False) as main:  # noqa: F841 - taql reads $main
        rows = taql(
            "select FLAG, DATA_DESC_ID from $main where FIELD_ID == 12 && ANTENNA1 != ANTENNA2"
        )
        flags, ddid = rows.getcol("FLAG"), rows.getcol("DATA_DESC_ID")
    # Stokes I from XX and YY: each unflagged (row, chan) pair gives one sample
    # whose real part has sigma_part / sqrt(2); the image averages them.
    per_sample_variance = (sigma_part[ddid] ** 2 / 2)[:, None] * np.ones(flags.shape[1])
    usable = ~flags.any(axis=2)
    n = usable.sum()
    expected = np.sqrt(per_sample_variance[usable].sum()) / n
    (image,) = natural["images"]
    assert image["rms_jy"] == pytest.approx(expected, rel=0.2)


def run_image_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "image", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_image_without_corrected_data_images_data_only(corrupted_small, tmp_path):
    result = run_image_cli(
        corrupted_small, "--field", "3", "--imsize", "128", "--out", tmp_path, "--n-workers", "1"
    )
    assert result.returncode == 0, result.stderr
    assert "no CORRECTED_DATA: imaging DATA only" in result.stdout
    assert (tmp_path / f"{corrupted_small.stem}_field03_data" / "image.image.fits").exists()
    assert not list(tmp_path.glob("*corrected*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--field", "99"], "out of range"),
        (["--cell", "0.5"], "pixels of 0.50 arcsec"),
        (["--deconvolver", "clark"], "invalid choice"),
        (["--robust", "5"], "robust must be in [-2, 2]"),
    ],
)
def test_image_bad_input_is_one_line(corrupted_small, tmp_path, args, message):
    result = run_image_cli(corrupted_small, "--out", tmp_path, *args)
    assert result.returncode == 2
    assert message in one_error_line(result)


def spoil_field(ms, field, how):
    from casacore.tables import table

    with table(str(ms), readonly=False, ack=False) as main:
        in_field = main.getcol("FIELD_ID") == field
        if how == "flag":
            flags = main.getcol("FLAG")
            flags[in_field] = True
            main.putcol("FLAG", flags)
        else:
            data = main.getcol("DATA")
            first = np.unique(main.getcol("ANTENNA1"))[2]  # an antenna with data
            data[in_field & (main.getcol("ANTENNA1") == first)] = np.nan
            main.putcol("DATA", data)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flag", "every cross-correlation in field 3 is flagged"),
        ("nan", "unflagged DATA values that are NaN or infinite"),
    ],
)
def test_fully_flagged_or_nan_field_is_refused(corrupted_small, tmp_path, how, message):
    ms = tmp_path / "spoiled.ms"
    shutil.copytree(corrupted_small, ms)
    spoil_field(ms, 3, how)
    result = run_image_cli(ms, "--field", "3", "--out", tmp_path / "images")
    assert result.returncode == 2
    assert message in one_error_line(result)
    assert not (tmp_path / "images").exists()


def test_output_below_a_file_is_one_line(corrupted_small, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_image_cli(corrupted_small, "--field", "3", "--out", tmp_path / "notes.txt" / "im")
    assert result.returncode == 2  # refused before any work
    assert "is not a directory" in one_error_line(result)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_casa_task_failure_names_task_and_ms_and_leaves_nothing(corrupted_small, tmp_path):
    with pytest.raises(tasks.CasaTaskError, match=r"tclean failed on .*small\.ms: .*robust"):
        tasks.run_tclean(str(corrupted_small), str(tmp_path / "im"), None, robust=5.0)
    assert list(tmp_path.iterdir()) == []


def test_worker_killed_mid_image_is_one_line_and_the_next_run_cleans_up(corrupted_small, tmp_path):
    """tclean dies writing a 1280-pixel image past a 4 MB file-size limit."""
    limit = 4 * 1024**2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [corrupted_small, "--field", "3", "--imsize", "1280", "--niter", "0"]
    args += ["--out", tmp_path, "--n-workers", "1"]
    killed = subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", "image", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=small_files,
        env={**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
    )
    assert killed.returncode == 1
    assert "worker process died running tclean-small_field03_data" in one_error_line(killed)
    final = tmp_path / "small_field03_data"
    assert not final.exists()
    assert list(tmp_path.glob(".small_field03_data.partial-*")), "the killed worker left none"
    result = run_image_cli(*args)
    assert result.returncode == 0, result.stderr
    assert (final / "image.image.fits").exists()
    assert not list(tmp_path.glob(".*partial-*"))


def test_whole_file_image_at_the_median_meridian(calibrated_target, tmp_path, client):
    """--phasecenter: every field shifted into a new MS and imaged as one; input untouched."""
    from dsa110_contimg.imaging.plan import parse_phasecenter, plan_whole_file

    target, mms, _, _ = calibrated_target
    before = _column_digest(mms)
    centre, label = parse_phasecenter("median-meridian", mms)
    shift, jobs = plan_whole_file(mms, centre, label, "both", ImagingConfig(niter=200), tmp_path)
    result = run_imaging(jobs, client, tmp_path, tmp_path / "run", load_truth_path(target),
                         shift=shift)  # fmt: skip
    (comparison,) = result["comparisons"]
    assert comparison["label"] == "all fields"
    assert comparison["coherence_after"] > comparison["coherence_before"]
    assert result["phase_shift"]["phasecenter"] == "median-meridian"
    with table(f"{shift.output_ms}/FIELD", ack=False) as t:
        phase = np.degrees(t.getcol("PHASE_DIR")[:, 0, :])
    np.testing.assert_allclose(phase[:, 1], centre[1], atol=1e-6)
    assert np.all(np.abs((phase[:, 0] - centre[0] + 180) % 360 - 180) < 1e-6)
    assert _column_digest(mms) == before, "the input changed"


def _column_digest(ms) -> str:
    import hashlib

    with table(str(ms), ack=False) as t:
        return hashlib.sha256(t.getcol("CORRECTED_DATA").tobytes()).hexdigest()
