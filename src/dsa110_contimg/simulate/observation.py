"""Driver: build a synthetic DSA-110 observation with known truth.

Steps: plan (plain data) -> MS skeleton (casatools simulator) -> truth drawn
from the seed -> visibilities filled block by block (one block per
integration and SPW, so memory stays bounded) -> truth and MS published by
rename, so an interrupted run never leaves a half-written product.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg import instrument
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.ms.writes import rewrite_row_groups
from dsa110_contimg.simulate import corruption_kernels as ck
from dsa110_contimg.simulate.config import SimulationConfig
from dsa110_contimg.simulate.ms_skeleton import build_ms_skeleton
from dsa110_contimg.simulate.plan import ObservationPlan, mjd_seconds_to_iso, plan_observation
from dsa110_contimg.simulate.truth import SCHEMA, VERSION, SimulationTruth, truth_path
from dsa110_contimg.sky.beam import airy_power_response
from dsa110_contimg.sky.coordinates import angular_separation, direction_cosines
from dsa110_contimg.sky.predict_kernels import point_source_visibilities, power_law_flux

log = logging.getLogger(__name__)

RFI_AMPLITUDE_SIGMAS = 200.0


@dataclass(frozen=True)
class SimulationResult:
    ms_path: Path
    truth_path: Path
    n_rows: int
    seconds: float


def simulate_observation(
    out_path: str | os.PathLike, config: SimulationConfig, overwrite: bool = False
) -> SimulationResult:
    """Write a synthetic observation to ``out_path`` and its truth beside it."""
    started = time.perf_counter()
    out_path = Path(out_path).absolute()
    plan = plan_observation(config)
    _check_output(out_path, overwrite)
    _check_free_space(out_path, plan, config)
    with publish_directory(out_path) as partial:
        log.info(
            "simulating %s: %d antennas, %d SPW x %d channels, %d integrations from %s",
            out_path.name,
            len(plan.antenna_names),
            *plan.chan_freq_hz.shape,
            len(plan.time_mjd_s),
            mjd_seconds_to_iso(plan.time_mjd_s[0] - plan.integration_s / 2),
        )
        build_ms_skeleton(str(partial), plan, config.autocorrelations)
        truth = draw_truth(config, plan)
        n_rows = fill_visibilities(str(partial), plan, truth, config)
        truth.save(truth_path(out_path))
    seconds = time.perf_counter() - started
    log.info("wrote %s (%d rows) in %.1f s", out_path, n_rows, seconds)
    return SimulationResult(out_path, truth_path(out_path), n_rows, seconds)


def _check_output(out_path: Path, overwrite: bool) -> None:
    parent = out_path.parent
    if not parent.is_dir():
        raise ContimgError(f"output directory {parent} does not exist")
    try:
        probe = tempfile.mkdtemp(prefix=f".{out_path.name}.probe-", dir=parent)
    except OSError as err:
        raise ContimgError(f"output directory {parent} is not writable ({err.strerror})") from err
    os.rmdir(probe)
    if out_path.exists() and not overwrite:
        raise ContimgError(f"{out_path} already exists; pass --overwrite to replace it")
    if out_path.exists() and not (out_path / "table.dat").exists():
        raise ContimgError(
            f"{out_path} exists and is not a Measurement Set; refusing to replace it"
        )


# Bytes per row besides the visibilities (UVW, WEIGHT, SIGMA, ids, times), and a
# margin for subtables and storage-manager overhead: a measured small MS takes
# 241 bytes a row for 16 visibilities, 9 bytes each with its flag.
_ROW_OVERHEAD_BYTES = 120
_SPACE_MARGIN = 1.5


def _check_free_space(out_path: Path, plan: ObservationPlan, config: SimulationConfig) -> None:
    """Refuse before writing when the MS cannot fit: CASA aborts the process on a full disk."""
    n_ant = len(plan.antenna_names)
    n_baselines = n_ant * (n_ant + 1) // 2 if config.autocorrelations else n_ant * (n_ant - 1) // 2
    n_spw, n_chan = plan.chan_freq_hz.shape
    n_rows = n_baselines * len(plan.time_mjd_s) * n_spw
    per_row = n_chan * 2 * 9 + _ROW_OVERHEAD_BYTES
    needed = int(_SPACE_MARGIN * n_rows * per_row) + 2**20
    free = shutil.disk_usage(out_path.parent).free
    if needed > free:
        raise ContimgError(
            f"not enough free space in {out_path.parent} for {out_path.name}: it needs about "
            f"{needed / 1e6:.1f} MB and {free / 1e6:.1f} MB are free"
        )


def draw_truth(config: SimulationConfig, plan: ObservationPlan) -> SimulationTruth:
    """Draw gains, RFI cells and zero rows from the seed (no I/O)."""
    rng = np.random.default_rng([config.seed, 0])
    n_ant = len(plan.antenna_names)
    n_corr = len(instrument.CORRELATIONS)
    n_spw, n_chan = plan.chan_freq_hz.shape
    n_time = len(plan.time_mjd_s)
    if config.corrupt:
        bandpass = ck.draw_bandpass(
            rng,
            n_ant,
            plan.chan_freq_hz,
            n_corr,
            config.bandpass_amp_scatter,
            config.bandpass_phase_scatter_deg,
            config.delay_scatter_ns,
        )
        drift = ck.draw_phase_drift(rng, n_ant, plan.time_mjd_s, n_corr, config.drift_phase_rms_deg)
    else:
        bandpass = np.ones((n_ant, n_spw, n_chan, n_corr), dtype=complex)
        drift = np.zeros((n_ant, n_time, n_corr))
    for name in config.dead_antennas:
        bandpass[plan.antenna_names.index(name)] = 0.0
    # Indexed like the MS's ANTENNA table (every station); no data, no gain.
    rows = plan.station_index
    bandpass = _on_stations(bandpass, rows, len(plan.station_names))
    drift = _on_stations(drift, rows, len(plan.station_names))

    event_rng = np.random.default_rng([config.seed, 3])
    rfi_cells = np.stack(
        [
            event_rng.integers(0, n_time, config.n_rfi_spikes),
            event_rng.integers(0, n_spw, config.n_rfi_spikes),
            event_rng.integers(0, n_chan, config.n_rfi_spikes),
        ],
        axis=1,
    ).astype(np.int64)
    ant1, ant2 = np.triu_indices(n_ant, k=0 if config.autocorrelations else 1)
    n_rows = n_time * n_spw * len(ant1)
    n_zero = int(round(config.zero_row_fraction * n_rows))
    picked = np.sort(event_rng.choice(n_rows, size=n_zero, replace=False))
    t_idx, rest = np.divmod(picked, n_spw * len(ant1))
    s_idx, b_idx = np.divmod(rest, len(ant1))
    zero_rows = np.stack([t_idx, s_idx, rows[ant1[b_idx]], rows[ant2[b_idx]]], axis=1).astype(
        np.int64
    )

    sigma = ck.radiometer_sigma(config.sefd_jy, plan.chan_width_hz, plan.integration_s)
    meta = {
        "schema": SCHEMA,
        "version": VERSION,
        "config": config.to_dict(),
        "antenna_names": list(plan.station_names),
        "antennas_with_data": list(plan.antenna_names),
        "corr_names": list(instrument.CORRELATIONS),
        "spw_chan_freq_hz": plan.chan_freq_hz.tolist(),
        "time_mjd_s": plan.time_mjd_s.tolist(),
        "field_names": list(plan.field_names),
        "field_ra_deg": np.degrees(plan.field_ra_rad).tolist(),
        "field_dec_deg": np.degrees(plan.field_dec_rad).tolist(),
        "sky": [s.__dict__ for s in plan.sources],
        "noise_sigma_jy": [float(sigma) if config.noise else 0.0] * n_spw,
        "conventions": (
            "DATA = g1 conj(g2) V_sky + |g1||g2| n; g = bandpass[ant, spw] * "
            "exp(1j phase_drift_rad[ant, time]); V_sky = sum S exp(+2 pi i "
            "(u l + v m + w (n - 1)) / lambda), primary beam applied when "
            "config.primary_beam"
        ),
    }
    return SimulationTruth(meta, bandpass, drift, rfi_cells, zero_rows)


def _on_stations(per_antenna: np.ndarray, rows, n_stations: int) -> np.ndarray:
    full = np.zeros((n_stations, *per_antenna.shape[1:]), per_antenna.dtype)
    full[rows] = per_antenna
    return full


def fill_visibilities(ms_path: str, plan, truth: SimulationTruth, config: SimulationConfig) -> int:
    """Write DATA, WEIGHT and SIGMA block by block; returns the number of rows."""
    sigma = truth.meta["noise_sigma_jy"][0]
    rfi = {tuple(cell) for cell in truth.rfi_cells.tolist()}
    zero = {tuple(row) for row in truth.zero_rows.tolist()}
    n_corr = len(instrument.CORRELATIONS)
    sky_flux = _apparent_flux(plan, config)  # (time, src, spw, chan)
    source_ra = np.radians([s.ra_deg for s in plan.sources])
    source_dec = np.radians([s.dec_deg for s in plan.sources])
    live = np.abs(truth.bandpass).max(axis=(1, 2, 3)) > 0

    weight_value = 1.0 / sigma**2 if sigma > 0 else 1.0

    def fill(t, spw, columns):
        uvw, a1, a2 = columns["UVW"], columns["ANTENNA1"], columns["ANTENNA2"]
        nrow = len(a1)
        l, m, n = direction_cosines(
            source_ra, source_dec, plan.field_ra_rad[t], plan.field_dec_rad[t]
        )
        model = point_source_visibilities(
            uvw, np.stack([l, m, n], axis=-1), plan.chan_freq_hz[spw], sky_flux[t, :, spw]
        )
        gain = truth.bandpass[:, spw] * np.exp(1j * truth.phase_drift_rad[:, t, None, :])
        g1, g2 = gain[a1], gain[a2]
        data = ck.apply_baseline_gains(model[:, :, None], g1, g2)

        auto = a1 == a2
        total_flux = sky_flux[t, :, spw].sum(axis=0)  # (chan,)
        data[auto] = (np.abs(g1[auto]) ** 2) * (config.sefd_jy + total_flux)[None, :, None]
        if config.noise:
            rng = np.random.default_rng([config.seed, 1, t, spw])
            noise = ck.thermal_noise(rng, data.shape, sigma)
            scale1 = np.where(live[a1][:, None, None], np.abs(g1), 1.0)
            scale2 = np.where(live[a2][:, None, None], np.abs(g2), 1.0)
            noise *= scale1 * scale2
            # Autocorrelations are real with twice the per-part variance.
            noise[auto] = np.sqrt(2.0) * noise[auto].real
            data += noise
        for chan in range(plan.chan_freq_hz.shape[1]):
            if (t, spw, chan) in rfi:
                rfi_rng = np.random.default_rng([config.seed, 4, t, spw, chan])
                spike = RFI_AMPLITUDE_SIGMAS * max(sigma, 1.0)
                data[~auto, chan, :] += spike * np.exp(
                    2j * np.pi * rfi_rng.uniform(size=(int((~auto).sum()), 1))
                )
        if zero:
            zero_mask = np.array([(t, spw, i, j) in zero for i, j in zip(a1, a2, strict=True)])
            data[zero_mask] = 0.0
        return {
            "DATA": data.astype(np.complex64),
            "SIGMA": np.full((nrow, n_corr), max(sigma, 1.0), np.float32),
            "WEIGHT": np.full((nrow, n_corr), weight_value, np.float32),
        }

    return rewrite_row_groups(ms_path, ("UVW", "ANTENNA1", "ANTENNA2"), fill)


def _apparent_flux(plan: ObservationPlan, config: SimulationConfig) -> np.ndarray:
    """Flux of every source as seen at each integration: (time, src, spw, chan) in Jy."""
    flux = np.stack(
        [
            power_law_flux(s.flux_jy, s.ref_freq_hz, s.spectral_index, plan.chan_freq_hz)
            for s in plan.sources
        ]
    )  # (src, spw, chan)
    flux = np.broadcast_to(flux, (len(plan.time_mjd_s), *flux.shape)).copy()
    if config.primary_beam:
        ra = np.radians([s.ra_deg for s in plan.sources])
        dec = np.radians([s.dec_deg for s in plan.sources])
        offset = angular_separation(
            plan.field_ra_rad[:, None], plan.field_dec_rad[:, None], ra[None, :], dec[None, :]
        )  # (time, src): the dishes point at each integration's phase centre
        flux *= airy_power_response(offset[:, :, None, None], plan.chan_freq_hz[None, None])
    return flux
