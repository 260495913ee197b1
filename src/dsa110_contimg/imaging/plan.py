"""What to image, at which cell and size: plain frozen data built before any tclean.

Defaults suit DSA-110: Stokes I, Briggs robust 0, three cells across the
synthesised beam of the longest baseline at the highest frequency, and an
image wide enough to cover the primary beam down to ``pb_limit`` at the
lowest frequency.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.instrument import DISH_DIAMETER_M
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.ms.reads import (
    chan_freq_hz,
    main_columns,
    read_subtable,
    require_ms,
    usable_baselines,
)
from dsa110_contimg.selection import parse_index_selection
from dsa110_contimg.sky.beam import airy_power_response

log = logging.getLogger(__name__)

SPEED_OF_LIGHT_M_S = 299_792_458.0
COLUMNS = {"data": "DATA", "corrected": "CORRECTED_DATA"}


@dataclass(frozen=True)
class ImagingConfig:
    cells_per_beam: float = 3.0
    pb_limit: float = 0.2
    max_imsize: int = 4096
    cell_arcsec: float | None = None  # overrides cells_per_beam
    imsize: int | None = None  # overrides pb_limit
    niter: int = 1000
    nsigma: float = 4.0
    deconvolver: str = "hogbom"
    scales: tuple[int, ...] = (0, 5, 15)
    weighting: str = "briggs"
    robust: float = 0.0

    def replace(self, **changes) -> ImagingConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        checks = [
            (self.deconvolver in ("hogbom", "multiscale"), "deconvolver: hogbom or multiscale"),
            (
                self.weighting in ("briggs", "natural", "uniform"),
                "weighting: briggs, natural, uniform",
            ),
            (0 < self.pb_limit < 1, "pb_limit must be in (0, 1)"),
            (self.niter >= 0, "niter must not be negative"),
            (self.cells_per_beam >= 1, "cells_per_beam must be at least 1"),
            (self.cell_arcsec is None or self.cell_arcsec > 0, "cell must be positive"),
            (self.imsize is None or self.imsize >= 16, "imsize must be at least 16"),
            (-2 <= self.robust <= 2, "robust must be in [-2, 2]"),
            (self.nsigma >= 0, "nsigma must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ContimgError(f"invalid imaging settings: {message}")


WHOLE_FILE = -1  # ImageJob.field: every field of the MS in one image


@dataclass(frozen=True)
class ShiftJob:
    """Every field of ``input_ms`` phase-shifted to one centre, into a new MS."""

    input_ms: str
    output_ms: str
    centre_deg: tuple[float, float]  # J2000 RA, Dec
    label: str  # median-meridian, calibrator or given

    @property
    def direction(self) -> str:
        return f"J2000 {self.centre_deg[0]:.8f}deg {self.centre_deg[1]:.8f}deg"


@dataclass(frozen=True)
class ImageJob:
    """One tclean run: an MS, a field (or the whole file), a data column, its own directory."""

    ms: str
    field: int
    column: str  # "data" or "corrected"
    output_dir: str
    imsize: int
    cell_arcsec: float
    phase_dir_deg: tuple[float, float]
    pointing_deg: tuple[float, float]
    config: ImagingConfig = field(default_factory=ImagingConfig)
    dish_diameter_m: float = DISH_DIAMETER_M

    @property
    def imagename(self) -> str:
        return str(Path(self.output_dir) / "image")

    @property
    def label(self) -> str:
        return "all fields" if self.field == WHOLE_FILE else f"field {self.field}"


def median_meridian_deg(ms) -> tuple[float, float]:
    """The median of the fields' pointings (FIELD::REFERENCE_DIR, the meridian of a drift
    scan, which rephasing leaves alone): circular in RA."""
    field = read_subtable(ms, "FIELD", columns=["REFERENCE_DIR"])
    pointing = field.REFERENCE_DIR.values[:, 0, :]
    ra = np.angle(np.median(np.cos(pointing[:, 0])) + 1j * np.median(np.sin(pointing[:, 0])))
    return float(np.degrees(ra) % 360), float(np.degrees(np.median(pointing[:, 1])))


def parse_phasecenter(text: str, ms, calibrator=None) -> tuple[tuple[float, float], str]:
    """(J2000 RA, Dec deg, label) of --phasecenter: median-meridian, calibrator, RA,DEC deg,
    or a CASA direction ``J2000 <ra>deg <dec>deg``."""
    if text == "median-meridian":
        return median_meridian_deg(ms), "median-meridian"
    if text == "calibrator":
        if calibrator is None:
            raise ContimgError(
                "--phasecenter calibrator needs --calibrator (or --cal-ra/--cal-dec)"
            )
        return (calibrator.ra_deg, calibrator.dec_deg), calibrator.name
    parts = text.replace(",", " ").split()
    if parts and parts[0].upper() in ("J2000", "ICRS"):
        parts = parts[1:]
    try:
        ra, dec = (float(p.removesuffix("deg")) for p in parts)
    except ValueError:
        raise ContimgError(
            f"--phasecenter {text!r}: give median-meridian, calibrator, RA,DEC in degrees "
            "or 'J2000 <ra>deg <dec>deg'"
        ) from None
    if not (0 <= ra < 360 and -90 <= dec <= 90):
        raise ContimgError(f"--phasecenter {text!r}: RA must be in [0, 360), Dec in [-90, 90]")
    return (ra, dec), "given"


def plan_whole_file(ms, centre_deg, label: str, datacolumn: str, config: ImagingConfig,
                    output_dir) -> tuple[ShiftJob, list[ImageJob]]:  # fmt: skip
    """The shifted copy of ``ms`` and its whole-file images (every field in one image)."""
    per_field = plan_imaging(ms, None, datacolumn, config, output_dir)
    stem = Path(ms).name.removesuffix(".mms").removesuffix(".ms")
    shifted = Path(output_dir).absolute() / f"{stem}_{label.replace('+', 'p')}.ms"
    shift = ShiftJob(str(Path(ms).absolute()), str(shifted), tuple(centre_deg), label)
    pointings = np.array([j.pointing_deg for j in per_field])
    spread = np.degrees(np.abs(np.angle(np.exp(1j * np.radians(pointings[:, 0] - centre_deg[0])))))
    grow = 1 + 2 * float(spread.max()) * 3600 / (per_field[0].imsize * per_field[0].cell_arcsec)
    imsize = good_fft_size(per_field[0].imsize * grow)
    if imsize > config.max_imsize:
        raise ContimgError(
            f"a whole-file image covering every field's beam needs {imsize} x {imsize} pixels "
            f"(more than {config.max_imsize}); raise --cell or --pb-limit, or --max-imsize"
        )
    median_pointing = median_meridian_deg(ms)
    jobs = []
    for column in sorted({j.column for j in per_field}):
        jobs.append(
            dataclasses.replace(
                per_field[0],
                ms=str(shifted),
                field=WHOLE_FILE,
                column=column,
                output_dir=str(Path(output_dir).absolute() / f"{stem}_all_{column}"),
                imsize=imsize,
                phase_dir_deg=tuple(centre_deg),
                pointing_deg=median_pointing,
            )
        )
    return shift, jobs


def good_fft_size(n: int) -> int:
    """Smallest even size >= n whose only prime factors are 2, 3 and 5."""
    size = max(int(np.ceil(n)), 16)
    while True:
        if size % 2 == 0:
            rest = size
            for p in (2, 3, 5):
                while rest % p == 0:
                    rest //= p
            if rest == 1:
                return size
        size += 1


def beam_radius_rad(freq_hz: float, response: float, dish_diameter_m: float) -> float:
    """Offset at which the Airy power response of the dishes falls to ``response``."""
    lo, hi = 0.0, np.radians(20.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if airy_power_response(mid, freq_hz, dish_diameter_m) > response:
            lo = mid
        else:
            hi = mid
    return lo


def _longest_baseline_m(ms, fields, columns) -> dict[int, float]:
    """Longest usable cross-correlation baseline (m) of each field.

    Refuses a field with no unflagged visibility and one whose unflagged
    visibilities in an imaged column hold NaN or infinity (tclean would
    return a blank or NaN image without complaint).
    """
    length, field_ids, bad = usable_baselines(ms, fields, [COLUMNS[c] for c in columns])
    longest = {}
    for f in fields:
        in_field = field_ids == f
        if not in_field.any():
            raise ContimgError(f"{ms}: every cross-correlation in field {f} is flagged")
        n_bad = int(bad[in_field].sum())
        if n_bad:
            names = " or ".join(COLUMNS[c] for c in columns)
            raise ContimgError(
                f"{ms}: field {f} has {n_bad} unflagged {names} values that are NaN or "
                "infinite; flag them first (CASA flagdata mode='clip' flags them)"
            )
        longest[f] = float(length[in_field].max())
    return longest


def plan_imaging(
    ms, fields: str | None, datacolumn: str, config: ImagingConfig, output_dir
) -> list[ImageJob]:
    """Image jobs for the chosen fields and columns (refusing what cannot work)."""
    config.validate()
    ms = require_ms(ms)
    if datacolumn not in ("data", "corrected", "both"):
        raise ContimgError(f"--datacolumn must be data, corrected or both, not {datacolumn!r}")
    columns = ["data", "corrected"] if datacolumn == "both" else [datacolumn]
    present = set(main_columns(ms))
    if "corrected" in columns and "CORRECTED_DATA" not in present:
        log.debug("%s has no CORRECTED_DATA: imaging DATA only", ms)
        print(f"{ms} has no CORRECTED_DATA: imaging DATA only")
        columns = ["data"]
    if "DATA" not in present:
        raise ContimgError(f"{ms} has no DATA column")
    field_table = read_subtable(ms, "FIELD", columns=["PHASE_DIR", "REFERENCE_DIR"])
    n_fields = field_table.sizes["row"]
    chosen = parse_index_selection(fields, "field", n_fields) if fields else list(range(n_fields))
    freqs = np.concatenate(chan_freq_hz(ms))
    dish = array_of(ms).dish_diameter_m
    longest = _longest_baseline_m(ms, chosen, columns)
    if config.cell_arcsec:
        cell = config.cell_arcsec
    else:
        resolution = SPEED_OF_LIGHT_M_S / freqs.max() / max(longest.values())
        cell = float(np.degrees(resolution) * 3600 / config.cells_per_beam)
    if config.imsize:
        imsize = good_fft_size(config.imsize)
    else:
        radius = beam_radius_rad(freqs.min(), config.pb_limit, dish)
        imsize = good_fft_size(2 * np.degrees(radius) * 3600 / cell)
    if imsize > config.max_imsize:
        raise ContimgError(
            f"an image covering the primary beam to response {config.pb_limit} needs "
            f"{imsize} x {imsize} pixels of {cell:.2f} arcsec (more than {config.max_imsize}); "
            "raise --cell or --pb-limit, or --max-imsize"
        )
    stem = Path(ms).name.removesuffix(".mms").removesuffix(".ms")
    phase = np.degrees(field_table.PHASE_DIR.values[:, 0, :])
    pointing = np.degrees(field_table.REFERENCE_DIR.values[:, 0, :])
    jobs = []
    for f in chosen:
        for column in columns:
            jobs.append(
                ImageJob(
                    ms=str(ms),
                    field=f,
                    column=column,
                    output_dir=str(Path(output_dir).absolute() / f"{stem}_field{f:02d}_{column}"),
                    imsize=imsize,
                    cell_arcsec=cell,
                    phase_dir_deg=(float(phase[f, 0] % 360), float(phase[f, 1])),
                    pointing_deg=(float(pointing[f, 0] % 360), float(pointing[f, 1])),
                    config=config,
                    dish_diameter_m=dish,
                )
            )
    return jobs
