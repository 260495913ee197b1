"""Image metrics as pure numpy functions (no I/O): noise, peaks, source fluxes.

Images are 2-D ``(y, x)`` float arrays in Jy/beam; NaN marks pixels outside
the imaged primary-beam region. Positions are pixel coordinates (x, y).
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826


def source_mask(shape, positions_xy, radius_px: float) -> np.ndarray:
    """True within ``radius_px`` of any of ``positions_xy`` ((k, 2) pixels)."""
    yy, xx = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for x, y in np.asarray(positions_xy, dtype=float).reshape(-1, 2):
        mask |= (xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2
    return mask


def robust_rms(image: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Noise as 1.4826 x the median absolute deviation of finite pixels not excluded."""
    good = np.isfinite(image)
    if exclude is not None:
        good &= ~exclude
    values = image[good]
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def peak_near(image: np.ndarray, x: float, y: float, radius_px: float) -> float:
    """Largest finite pixel within ``radius_px`` of (x, y); NaN when none is there."""
    mask = source_mask(image.shape, [(x, y)], radius_px) & np.isfinite(image)
    if not mask.any():
        return float("nan")
    return float(image[mask].max())


def fitted_peak_near(image: np.ndarray, x: float, y: float, radius_px: float) -> float:
    """Peak of a point source near (x, y), interpolated between pixels.

    A Gaussian restoring beam sampled at a few pixels per beam puts the true
    peak between pixels, so the brightest pixel reads low (up to ~15 % at 3
    pixels per beam). A quadratic fitted to the logarithm of the 3 x 3 pixels
    around the brightest one is exact for a Gaussian of any orientation; when
    that does not apply (edge, non-positive pixels, no maximum inside the
    patch) the brightest pixel is returned.
    """
    mask = source_mask(image.shape, [(x, y)], radius_px) & np.isfinite(image)
    if not mask.any():
        return float("nan")
    masked = np.where(mask, image, -np.inf)
    py, px = np.unravel_index(int(np.argmax(masked)), image.shape)
    brightest = float(image[py, px])
    patch = image[py - 1 : py + 2, px - 1 : px + 2]
    if py < 1 or px < 1 or patch.shape != (3, 3) or not (patch > 0).all():
        return brightest
    dy, dx = np.mgrid[-1:2, -1:2]
    design = np.stack(
        [np.ones(9), dx.ravel(), dy.ravel(), dx.ravel() ** 2, dy.ravel() ** 2, (dx * dy).ravel()],
        axis=1,
    )
    a, b, c, d, e, f = np.linalg.lstsq(design, np.log(patch).ravel(), rcond=None)[0]
    hessian = np.array([[2 * d, f], [f, 2 * e]])
    if not (np.linalg.eigvalsh(hessian) < 0).all():
        return brightest
    ox, oy = np.linalg.solve(hessian, [-b, -c])
    if abs(ox) > 1 or abs(oy) > 1:
        return brightest
    return float(np.exp(a + b * ox + c * oy + d * ox**2 + e * oy**2 + f * ox * oy))


def dynamic_range(peak: float, rms: float) -> float:
    return float(peak / rms) if rms > 0 else float("inf")


def block_maxima(image: np.ndarray, target_px: int) -> np.ndarray:
    """Shrink ``image`` (y, x) to at most ``target_px`` a side by maxima of square blocks.

    Point sources stay visible at display size, which averaging would dilute.
    Non-finite pixels are ignored; a block with no finite pixel is NaN. Edge
    rows and columns that do not fill a block are dropped.
    """
    factor = max(1, int(np.ceil(max(image.shape) / target_px)))
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    trimmed = image[:ny, :nx]
    finite_or_lowest = np.where(np.isfinite(trimmed), trimmed, -np.inf)
    blocks = finite_or_lowest.reshape(ny // factor, factor, nx // factor, factor)
    shrunk = blocks.max(axis=(1, 3))
    shrunk[np.isneginf(shrunk)] = np.nan
    return shrunk
