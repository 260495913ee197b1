"""A point source on the sky with a power-law spectrum."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PointSource:
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float  # at ref_freq_hz
    ref_freq_hz: float
    spectral_index: float

    def flux_at(self, freq_hz: float) -> float:
        return float(self.flux_jy * (freq_hz / self.ref_freq_hz) ** self.spectral_index)
