"""Where each field points and is phased, relative to a calibrator (subtables only)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.selection import parse_index_selection
from dsa110_contimg.sky.beam import airy_fwhm_rad, airy_power_response
from dsa110_contimg.sky.calibrators import (
    UNKNOWN_FLUX,
    Calibrator,
    CalibratorRequest,
    require_known_flux,
    resolve_calibrator,
)
from dsa110_contimg.sky.coordinates import angular_separation

log = logging.getLogger(__name__)

# Below this primary-beam response the calibrator is not in the observation at all.
MIN_VISIBLE_RESPONSE = 0.05


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
    """Every field against ``calibrator``; read once per MS state (FIELD, SPW, ANTENNA)."""
    path = str(Path(ms).absolute())
    return list(_cached_geometry(path, reads.subtable_stamp(path), calibrator))


@functools.lru_cache(maxsize=256)
def _cached_geometry(ms: str, stamp: tuple, calibrator: Calibrator) -> tuple[FieldGeometry, ...]:
    return tuple(_read_field_geometry(ms, calibrator))


def _read_field_geometry(ms, calibrator: Calibrator) -> list[FieldGeometry]:
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
    field = reads.read_subtable(ms, "FIELD", columns=["REFERENCE_DIR"])
    pointing = field.REFERENCE_DIR.values[:, 0, :]
    return brightest_in_beam(
        pointing[:, 0], pointing[:, 1], centre_freq_hz(ms), array_of(ms).dish_diameter_m,
        catalog, min_response,
    )  # fmt: skip


def brightest_in_beam(pointing_ra_rad, pointing_dec_rad, centre_freq: float, dish_m: float,
                      catalog, min_response: float):  # fmt: skip
    """(calibrator, apparent flux Jy) brightest in the beam of any of the pointings, or (None, 0).

    The response is the Airy power response at ``centre_freq`` from the pointing nearest
    the source; the same figure ``field_geometry`` gives as ``pb_response``.
    """
    best, best_flux = None, 0.0
    for candidate in catalog:
        offset = angular_separation(
            np.asarray(pointing_ra_rad), np.asarray(pointing_dec_rad),
            candidate.ra_rad, candidate.dec_rad,
        )  # fmt: skip
        response = float(np.max(airy_power_response(offset, centre_freq, dish_m)))
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


def centre_freq_hz(ms) -> float:
    """Midpoint of the observed band."""
    freqs = np.concatenate(reads.chan_freq_hz(ms))
    return float(0.5 * (freqs.min() + freqs.max()))


def choose_calibrator(
    ms,
    request: CalibratorRequest,
    catalog,
    needs_flux: str | None = None,
    from_beam: bool = True,
    required: bool = True,
) -> Calibrator | None:
    """The calibrator the request names, else (``from_beam``) the catalog source brightest
    in the beam of ``ms``.

    The request's flux (``flux_jy``, ``ref_freq_hz``, ``spectral_index``)
    replaces the spectrum of whichever calibrator this is. ``needs_flux``
    names what would use a guessed flux (a model, a flux scale): then a
    position whose flux is unknown is refused, otherwise warned about.
    Without ``required``, None when no catalog source is in the beam.
    """
    if not request.given and from_beam:
        best, best_flux = brightest_calibrator_in_beam(ms, catalog, MIN_VISIBLE_RESPONSE)
        if best is None and (required or request.flux_jy is not None):
            raise ContimgError(
                f"no catalog calibrator is in the primary beam of {ms}: give --calibrator NAME "
                "(or --cal-ra/--cal-dec with --cal-flux)"
            )
        if best is None:
            return None
        log.info("calibrator from the catalog: %s (%.2f Jy apparent)", best.name, best_flux)
        if request.flux_jy is None:
            return best
        request = CalibratorRequest(best.name, None, None, request.flux_jy,
                                    request.ref_freq_hz, request.spectral_index)  # fmt: skip
    calibrator = resolve_calibrator(request, catalog, centre_freq_hz(ms))
    if needs_flux:
        require_known_flux(calibrator, needs_flux)
    elif calibrator.reference.startswith(UNKNOWN_FLUX):
        log.warning(
            "%s: flux unknown, 1 Jy assumed (amplitude ratios against the model are in units "
            "of its true flux); give --cal-flux JY",
            calibrator.name,
        )
    log.debug("calibrator %s: %s", calibrator.name, calibrator.reference)
    return calibrator


@dataclass(frozen=True)
class FieldChoice:
    """How the fields to solve on (or check) are chosen.

    ``selection`` ("10~14", "3,4,5") names them; ``auto`` takes those where
    the calibrator's beam response is highest (``window`` consecutive fields
    around the peak, else every field of at least ``min_response``). With
    neither, ``unset`` decides: "all" (None), "auto" or "refuse".
    ``auto_over_selection``: the original pipeline's command lines give both,
    and there the automatic choice wins.
    """

    selection: str | None = None
    auto: bool = False
    window: int | None = None
    min_response: float = 0.3
    unset: str = "all"
    auto_over_selection: bool = False


def choose_fields(ms, calibrator: Calibrator, choice: FieldChoice) -> list[int] | None:
    """Field ids by ``choice``; None means every field."""
    if choice.auto and choice.selection:
        if not choice.auto_over_selection:
            raise ContimgError(
                "give the fields by --field or choose them with --auto-fields, not both"
            )
        log.info("--auto-fields chooses the fields: --field %s is not used", choice.selection)
    geometry = field_geometry(ms, calibrator)
    best = max(g.pb_response for g in geometry)
    if best < MIN_VISIBLE_RESPONSE:
        raise ContimgError(
            f"{calibrator.name} is outside every field's primary beam in {ms} "
            f"(best response {best:.2g} < {MIN_VISIBLE_RESPONSE})"
        )
    auto = choice.auto or (not choice.selection and choice.unset == "auto")
    if auto:
        fields = select_auto_fields(geometry, choice.window, choice.min_response)
        if not fields:
            raise ContimgError(
                f"no field sees {calibrator.name} with primary-beam response >= "
                f"{choice.min_response} (best {best:.2f}); lower --min-pb-response"
            )
        log.info(
            "%s: fields %s chosen for %s (beam response %.2f at peak, >= %.2f)",
            ms, fields, calibrator.name, best, choice.min_response,
        )  # fmt: skip
        return fields
    if choice.selection:
        return parse_index_selection(choice.selection, "field", len(geometry))
    if choice.unset == "refuse":
        raise ContimgError("choose the calibrator fields with --field or --auto-fields")
    return None
