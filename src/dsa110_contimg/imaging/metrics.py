"""Metrics of a restored image against the sources expected in it.

Known sources come from the simulation truth beside the MS (or a truth file
given), else from the calibrator catalog. A source's expected apparent flux
is its catalog flux at the image frequency times the Airy primary-beam
response toward it from the field's pointing; the measured flux is the peak
within one beam of its position, and the primary-beam corrected flux divides
by that same response.
"""

from __future__ import annotations

import numpy as np

from dsa110_contimg.imaging import metrics_kernels as k
from dsa110_contimg.sky.beam import airy_power_response
from dsa110_contimg.sky.coordinates import angular_separation
from dsa110_contimg.sky.sources import PointSource


def known_sources(ms, truth_path=None, catalog=None) -> tuple[list[PointSource], str]:
    """(sources, origin): the simulation truth when there is one, else ``catalog``.

    ``catalog`` is a sequence of calibrators (default: the built-in catalog).
    """
    from pathlib import Path

    from dsa110_contimg.simulate.truth import load_truth
    from dsa110_contimg.simulate.truth import truth_path as default_truth
    from dsa110_contimg.sky.calibrators import BUILTIN_CALIBRATORS

    path = Path(truth_path) if truth_path else default_truth(ms)
    if path.exists():
        sky = load_truth(path).meta["sky"]
        return [PointSource(**s) for s in sky], f"truth {path}"
    return [
        PointSource(c.name, c.ra_deg, c.dec_deg, c.flux_jy, c.ref_freq_hz, c.spectral_index)
        for c in (BUILTIN_CALIBRATORS if catalog is None else catalog)
    ], "catalog"


def read_fits_pixels(path) -> np.ndarray:
    """The image plane (y, x) of a FITS image in its stored precision, native byte order."""
    from astropy.io import fits

    pixels = np.squeeze(fits.getdata(path))
    return pixels.astype(pixels.dtype.newbyteorder("="), copy=False)


def read_fits_image(path):
    """(image (y, x) Jy/beam, WCS (celestial), frequency Hz, beam major FWHM deg)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with fits.open(path) as hdus:
        header = hdus[0].header
        data = np.asarray(hdus[0].data, dtype=float).squeeze()
    with warnings.catch_warnings():
        # CASA's headers carry observatory keywords astropy rewrites; harmless here.
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    freq = float(header.get("CRVAL3", header.get("RESTFRQ", 1.4e9)))
    beam_deg = float(header.get("BMAJ", abs(header["CDELT1"]) * 3))
    return data, wcs, freq, beam_deg


def image_metrics(
    image_fits,
    residual_fits,
    sources,
    pointing_deg,
    pb_limit: float,
    dish_diameter_m: float,
    source_radius_beams=3.0,
) -> dict:
    """Noise, peak, dynamic range and per-source fluxes of one restored image."""
    image, wcs, freq, beam_deg = read_fits_image(image_fits)
    residual = read_fits_pixels(residual_fits)
    cell_deg = abs(wcs.wcs.cdelt[0])
    beam_px = beam_deg / cell_deg
    rows = []
    for s in sources:
        x, y = wcs.world_to_pixel_values(s.ra_deg, s.dec_deg)
        if not (0 <= x < image.shape[1] and 0 <= y < image.shape[0]):
            continue
        offset = angular_separation(
            np.radians(pointing_deg[0]),
            np.radians(pointing_deg[1]),
            np.radians(s.ra_deg),
            np.radians(s.dec_deg),
        )
        response = float(airy_power_response(offset, freq, dish_diameter_m))
        if response < pb_limit:
            continue
        expected = s.flux_at(freq) * response
        measured = k.fitted_peak_near(image, float(x), float(y), beam_px)
        rows.append(
            {
                "name": s.name,
                "x": float(x),
                "y": float(y),
                "pb_response": response,
                "true_flux_jy": s.flux_at(freq),
                "expected_apparent_jy": expected,
                "measured_apparent_jy": measured,
                "pb_corrected_flux_jy": measured / response,
                "flux_error": measured / response / s.flux_at(freq) - 1,
                "coherence": measured / expected,
            }
        )
    mask = k.source_mask(
        image.shape, [(r["x"], r["y"]) for r in rows], source_radius_beams * beam_px
    )
    rms = k.robust_rms(residual, exclude=mask)
    peak = float(np.nanmax(image))
    brightest = max(rows, key=lambda r: r["expected_apparent_jy"], default=None)
    return {
        "frequency_hz": freq,
        "beam_major_arcsec": beam_deg * 3600,
        "cell_arcsec": cell_deg * 3600,
        "rms_jy": rms,
        "peak_jy": peak,
        "dynamic_range": k.dynamic_range(peak, rms),
        "coherence": brightest["coherence"] if brightest else None,
        "flux_error_brightest": brightest["flux_error"] if brightest else None,
        "sources": rows,
    }


def improvement(data: dict, corrected: dict) -> dict:
    """DATA -> CORRECTED ratios: noise down, dynamic range up, coherence up."""
    ratios = {
        "noise_ratio": data["rms_jy"] / corrected["rms_jy"],
        "dynamic_range_ratio": corrected["dynamic_range"] / data["dynamic_range"],
    }
    if data["coherence"] is not None and corrected["coherence"] is not None:
        ratios["coherence_before"] = data["coherence"]
        ratios["coherence_after"] = corrected["coherence"]
        ratios["flux_error_before"] = data["flux_error_brightest"]
        ratios["flux_error_after"] = corrected["flux_error_brightest"]
    return ratios
