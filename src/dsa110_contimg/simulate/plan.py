"""The layout of a synthetic observation as plain data, built before any I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg import instrument
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.simulate.array_layout import select_stations, station_enu
from dsa110_contimg.simulate.config import SimulationConfig
from dsa110_contimg.sky.calibrators import lookup_calibrator
from dsa110_contimg.sky.coordinates import enu_to_itrf, local_sidereal_time
from dsa110_contimg.sky.sources import PointSource

MJD_EPOCH = np.datetime64("1858-11-17T00:00:00", "us")
SIDEREAL_RATE = 1.00273781191135448  # sidereal days per solar day
DEFAULT_DATE = "2025-01-15"


@dataclass(frozen=True, eq=False)
class ObservationPlan:
    """Antennas, spectral windows, integrations, fields and sky of one observation.

    Arrays: ``antenna_itrf_m`` (ant, 3); ``chan_freq_hz`` (spw, chan);
    ``time_mjd_s``, ``field_ra_rad``, ``field_dec_rad`` (time,), one field per
    integration, phased to the local sidereal time at the integration midpoint.
    """

    antenna_names: tuple[str, ...]  # the antennas with data, in station order
    antenna_itrf_m: np.ndarray
    chan_freq_hz: np.ndarray
    chan_width_hz: float
    time_mjd_s: np.ndarray
    integration_s: float
    field_names: tuple[str, ...]
    field_ra_rad: np.ndarray
    field_dec_rad: np.ndarray
    sources: tuple[PointSource, ...]
    # Every station, as the real converter lists them in the ANTENNA table
    # (those not in ``antenna_names`` have no rows).
    station_names: tuple[str, ...] = ()
    station_itrf_m: np.ndarray | None = None

    @property
    def station_index(self) -> np.ndarray:
        """(antenna,) the ANTENNA-table row of each antenna with data."""
        return np.array([self.station_names.index(n) for n in self.antenna_names], dtype=int)

    @property
    def n_baselines_with_autos(self) -> int:
        n = len(self.antenna_names)
        return n * (n + 1) // 2


def iso_to_mjd_seconds(iso_utc: str) -> float:
    try:
        instant = np.datetime64(iso_utc.rstrip("Z"), "us")
    except ValueError as err:
        raise ContimgError(
            f"cannot read start time {iso_utc!r}: use ISO UTC, e.g. 2025-01-15T10:00:00"
        ) from err
    return float((instant - MJD_EPOCH) / np.timedelta64(1, "us") * 1e-6)


def mjd_seconds_to_iso(mjd_s: float) -> str:
    return str(MJD_EPOCH + np.timedelta64(int(round(mjd_s * 1e6)), "us"))


def transit_centred_start(ra_deg: float, duration_s: float, date: str = DEFAULT_DATE) -> float:
    """Start (MJD s) on ``date`` such that RA ``ra_deg`` transits mid-observation."""
    day_start = iso_to_mjd_seconds(f"{date}T00:00:00")
    lst0 = local_sidereal_time(day_start, instrument.SITE_LONGITUDE_DEG)
    wait_rad = np.mod(np.radians(ra_deg) - lst0, 2 * np.pi)
    transit = day_start + wait_rad / (2 * np.pi * SIDEREAL_RATE) * 86_400.0
    return float(transit - duration_s / 2)


def plan_observation(config: SimulationConfig) -> ObservationPlan:
    """Turn a validated config into the observation layout (no I/O, deterministic)."""
    config.validate()
    calibrator = lookup_calibrator(config.calibrator)
    names = select_stations(config.n_antennas)
    enu = station_enu()
    stations = list(enu)
    station_itrf = enu_to_itrf(
        np.stack([enu[n] for n in stations]),
        instrument.SITE_LATITUDE_DEG,
        instrument.SITE_LONGITUDE_DEG,
        instrument.SITE_HEIGHT_M,
    )
    itrf = station_itrf[[stations.index(n) for n in names]]
    unknown_dead = sorted(set(config.dead_antennas) - set(names))
    if unknown_dead:
        raise ContimgError(
            f"dead antennas {', '.join(unknown_dead)} are not in the simulated array "
            f"({names[0]} .. {names[-1]}, {len(names)} antennas)"
        )

    width = config.chan_width_hz
    spw_low = (
        instrument.BAND_LOW_EDGE_HZ + np.arange(config.n_spw)[:, None] * instrument.SPW_BANDWIDTH_HZ
    )
    chan_freq = spw_low + (np.arange(config.n_chan)[None, :] + 0.5) * width

    duration = config.n_times * config.integration_s
    if config.start_time is None:
        start = transit_centred_start(calibrator.ra_deg, duration)
    else:
        start = iso_to_mjd_seconds(config.start_time)
    time_mid = start + (np.arange(config.n_times) + 0.5) * config.integration_s
    field_ra = local_sidereal_time(time_mid, instrument.SITE_LONGITUDE_DEG)
    field_dec = np.full(config.n_times, np.radians(config.pointing_dec_deg))

    sources = [
        PointSource(
            calibrator.name,
            calibrator.ra_deg,
            calibrator.dec_deg,
            calibrator.flux_jy,
            calibrator.ref_freq_hz,
            calibrator.spectral_index,
        )
    ]
    sources += _draw_field_sources(config, field_ra, field_dec)
    return ObservationPlan(
        antenna_names=tuple(names),
        antenna_itrf_m=itrf,
        chan_freq_hz=chan_freq,
        chan_width_hz=width,
        time_mjd_s=time_mid,
        integration_s=config.integration_s,
        field_names=tuple(f"meridian_icrs_t{i}" for i in range(config.n_times)),
        field_ra_rad=field_ra,
        field_dec_rad=field_dec,
        sources=tuple(sources),
        station_names=tuple(stations),
        station_itrf_m=station_itrf,
    )


def _draw_field_sources(config, field_ra, field_dec) -> list[PointSource]:
    """Faint sources (50-500 mJy) scattered within 1.5 deg of the pointing track."""
    rng = np.random.default_rng([config.seed, 2])
    sources = []
    centre_ra = float(np.angle(np.mean(np.exp(1j * field_ra))))
    for k in range(config.n_field_sources):
        radius = np.radians(1.5) * np.sqrt(rng.uniform(0.01, 1.0))
        angle = rng.uniform(0, 2 * np.pi)
        dec = field_dec[0] + radius * np.sin(angle)
        ra = centre_ra + radius * np.cos(angle) / np.cos(dec)
        sources.append(
            PointSource(
                name=f"field_source_{k}",
                ra_deg=float(np.degrees(np.mod(ra, 2 * np.pi))),
                dec_deg=float(np.degrees(dec)),
                flux_jy=float(np.exp(rng.uniform(np.log(0.05), np.log(0.5)))),
                ref_freq_hz=1.4e9,
                spectral_index=float(rng.normal(-0.7, 0.2)),
            )
        )
    return sources
