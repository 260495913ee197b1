"""Where each field points and is phased, relative to a calibrator (subtables only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.sky.beam import airy_fwhm_rad, airy_power_response
from dsa110_contimg.sky.calibrators import Calibrator
from dsa110_contimg.sky.coordinates import angular_separation


@dataclass(frozen=True)
class FieldGeometry:
    """One field against the calibrator.

    ``phase_dir_deg`` is FIELD::PHASE_DIR, the column CASA ``phaseshift``
    changes; ``pointing_dir_deg`` is FIELD::REFERENCE_DIR, which it leaves
    alone and which for DSA-110 (drift scan, one field per integration) is
    where the dishes pointed. ``pb_response`` is the Airy power response
    toward the calibrator from the pointing, at the band centre, with
    ``pb_response_range`` over the observed band (highest, lowest frequency).
    """

    field_id: int
    name: str
    phase_dir_deg: tuple[float, float]
    pointing_dir_deg: tuple[float, float]
    separation_arcmin: float
    separation_over_fwhm: float
    pointing_offset_arcmin: float
    pb_response: float
    pb_response_range: tuple[float, float]


def field_geometry(ms, calibrator: Calibrator) -> list[FieldGeometry]:
    field = reads.read_subtable(ms, "FIELD", columns=["NAME", "PHASE_DIR", "REFERENCE_DIR"])
    freqs = np.concatenate(reads.chan_freq_hz(ms))
    centre_freq = 0.5 * (freqs.min() + freqs.max())
    phase = field.PHASE_DIR.values[:, 0, :]
    pointing = field.REFERENCE_DIR.values[:, 0, :]
    separation = angular_separation(phase[:, 0], phase[:, 1], calibrator.ra_rad, calibrator.dec_rad)
    offset = angular_separation(
        pointing[:, 0], pointing[:, 1], calibrator.ra_rad, calibrator.dec_rad
    )
    dish = array_of(ms).dish_diameter_m
    fwhm = airy_fwhm_rad(centre_freq, dish)
    result = []
    for i, name in enumerate(field.NAME.values):
        result.append(
            FieldGeometry(
                field_id=i,
                name=str(name),
                phase_dir_deg=tuple(float(x) for x in np.degrees(phase[i])),
                pointing_dir_deg=tuple(float(x) for x in np.degrees(pointing[i])),
                separation_arcmin=float(np.degrees(separation[i]) * 60),
                separation_over_fwhm=float(separation[i] / fwhm),
                pointing_offset_arcmin=float(np.degrees(offset[i]) * 60),
                pb_response=float(airy_power_response(offset[i], centre_freq, dish)),
                pb_response_range=(
                    float(airy_power_response(offset[i], freqs.max(), dish)),
                    float(airy_power_response(offset[i], freqs.min(), dish)),
                ),
            )
        )
    return result


def brightest_calibrator_in_beam(ms, catalog, min_response: float):
    """(calibrator, apparent flux Jy) of the catalog source brightest in the beam, or (None, 0)."""
    best, best_flux = None, 0.0
    for candidate in catalog:
        response = max(g.pb_response for g in field_geometry(ms, candidate))
        apparent = response * candidate.flux_jy
        if response >= min_response and apparent > best_flux:
            best, best_flux = candidate, apparent
    return best, best_flux


def select_auto_fields(
    geometry: list[FieldGeometry], window: int | None = None, min_response: float = 0.3
) -> list[int]:
    """Fields where the calibrator's primary-beam response is highest.

    With ``window`` N: the N consecutive fields centred on the peak response.
    Otherwise: every field whose response is at least ``min_response``.
    Returns an empty list when the calibrator is outside every field's beam.
    """
    response = np.array([g.pb_response for g in geometry])
    if len(response) == 0 or response.max() < min_response:
        return []
    if window is not None:
        peak = int(np.argmax(response))
        start = int(np.clip(peak - window // 2, 0, max(len(response) - window, 0)))
        return list(range(start, min(start + window, len(response))))
    return [int(i) for i in np.flatnonzero(response >= min_response)]
