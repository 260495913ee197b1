"""A synthetic archive: calibrator transits and later target files over several nights.

Shared by the archive tests and the throughput benchmark. Each night has one
file centred on the calibrator's transit and ``targets_per_night`` files
starting ``first_target_hours``, +1 h, ... after it (the calibrator far out
of the beam). Gains without slow drift, so a night's solutions transfer to
its targets; each night has its own seed, so its gains differ.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from dsa110_contimg.simulate import preset, simulate_observation
from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, transit_centred_start
from dsa110_contimg.sky.calibrators import lookup_calibrator

DEFAULT_FIRST_NIGHT = "2025-01-15"


def simulate_archive(
    out_dir,
    preset_name: str = "tiny",
    n_nights: int = 2,
    targets_per_night: int = 2,
    first_target_hours: float = 2.0,
    first_night: str = DEFAULT_FIRST_NIGHT,
    **overrides,
) -> list[dict]:
    """Write the files; returns [{path, night, role, truth}] in time order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    day0 = datetime.date.fromisoformat(first_night)
    for night in range(n_nights):
        date = (day0 + datetime.timedelta(days=night)).isoformat()
        config = preset(preset_name, drift_phase_rms_deg=0.0, seed=100 + night, **overrides)
        duration = config.n_times * config.integration_s
        transit_start = transit_centred_start(
            lookup_calibrator(config.calibrator).ra_deg, duration, date
        )
        starts = [("calibrator", transit_start)] + [
            ("target", transit_start + (first_target_hours + k) * 3600.0)
            for k in range(targets_per_night)
        ]
        for index, (role, start) in enumerate(starts):
            name = f"night{night}_{index:02d}_{role}.ms"
            result = simulate_observation(
                out_dir / name, config.replace(start_time=mjd_seconds_to_iso(start)),
                overwrite=True,
            )  # fmt: skip
            files.append({"path": str(result.ms_path), "night": night, "role": role,
                          "truth": str(result.truth_path)})  # fmt: skip
    return files
