"""Parameters of a synthetic DSA-110 observation, with size presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dsa110_contimg import instrument
from dsa110_contimg.errors import ContimgError


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a synthetic observation (same config -> same MS).

    Frequencies follow the real setup: SPW ``s`` covers the same 11.72 MHz as
    DSA-110 SPW ``s`` (SPW 0 lowest, from 1311.25 MHz); ``n_chan`` channels
    divide it evenly, so 48 channels give 244.140625 kHz.
    """

    n_antennas: int = 96
    n_spw: int = instrument.N_SPW
    n_chan: int = instrument.N_CHAN_PER_SPW
    n_times: int = instrument.N_INTEGRATIONS
    integration_s: float = instrument.INTEGRATION_S
    start_time: str | None = None  # ISO UTC; None centres the calibrator transit
    pointing_dec_deg: float = instrument.DEFAULT_POINTING_DEC_DEG
    calibrator: str = "0834+555"
    n_field_sources: int = 0
    primary_beam: bool = True
    corrupt: bool = True
    bandpass_amp_scatter: float = 0.1
    bandpass_phase_scatter_deg: float = 30.0
    delay_scatter_ns: float = 3.0
    drift_phase_rms_deg: float = 15.0
    noise: bool = True
    sefd_jy: float = instrument.SEFD_JY
    dead_antennas: tuple[str, ...] = ()
    n_rfi_spikes: int = 0
    zero_row_fraction: float = 0.0
    autocorrelations: bool = True
    seed: int = 0

    @property
    def chan_width_hz(self) -> float:
        return instrument.SPW_BANDWIDTH_HZ / self.n_chan

    def validate(self) -> None:
        """Refuse nonsense before anything is written."""
        checks = [
            (2 <= self.n_antennas <= 96, "n_antennas must be between 2 and 96"),
            (
                1 <= self.n_spw <= instrument.N_SPW,
                f"n_spw must be between 1 and {instrument.N_SPW}",
            ),
            (1 <= self.n_chan <= 4096, "n_chan must be between 1 and 4096"),
            (1 <= self.n_times <= 10_000, "n_times must be between 1 and 10000"),
            (self.integration_s > 0, "integration_s must be positive"),
            (-90 < self.pointing_dec_deg < 90, "pointing_dec_deg must be between -90 and 90"),
            (self.n_field_sources >= 0, "n_field_sources must not be negative"),
            (self.sefd_jy > 0, "sefd_jy must be positive"),
            (self.n_rfi_spikes >= 0, "n_rfi_spikes must not be negative"),
            (0 <= self.zero_row_fraction < 1, "zero_row_fraction must be in [0, 1)"),
            (self.bandpass_amp_scatter >= 0, "bandpass_amp_scatter must not be negative"),
            (self.drift_phase_rms_deg >= 0, "drift_phase_rms_deg must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise ContimgError(f"invalid simulation parameters: {message}")

    def replace(self, **changes) -> SimulationConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, SimulationConfig] = {
    "full": SimulationConfig(),
    "medium": SimulationConfig(n_antennas=48, n_spw=16, n_chan=12),
    "small": SimulationConfig(n_antennas=24, n_spw=4, n_chan=8),
    "tiny": SimulationConfig(n_antennas=10, n_spw=2, n_chan=4, n_times=6),
}


def preset(name: str, **overrides) -> SimulationConfig:
    """A preset with some parameters replaced; unknown names are a user error."""
    if name not in PRESETS:
        raise ContimgError(f"unknown size preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
