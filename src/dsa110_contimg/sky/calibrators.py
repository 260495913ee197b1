"""Built-in catalog of bright calibrators visible from the DSA-110 site.

Every entry gives its J2000 position, a reference flux density at a reference
frequency and a spectral index valid near 1.4 GHz, with the source of the
figures. Names can be looked up in any common spelling: B1950 (``0834+555``),
J2000 (``J0834+5534``) or a common name (``3C286``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.sky.predict_kernels import power_law_flux


@dataclass(frozen=True)
class Calibrator:
    """A point-like calibrator with a power-law spectrum."""

    name: str
    aliases: tuple[str, ...]
    ra_deg: float
    dec_deg: float
    flux_jy: float
    ref_freq_hz: float
    spectral_index: float
    reference: str

    @property
    def ra_rad(self) -> float:
        return float(np.radians(self.ra_deg))

    @property
    def dec_rad(self) -> float:
        return float(np.radians(self.dec_deg))

    def flux_at(self, freq_hz):
        """Flux density in Jy at ``freq_hz`` (scalar or array)."""
        return power_law_flux(self.flux_jy, self.ref_freq_hz, self.spectral_index, freq_hz)


BUILTIN_CALIBRATORS = (
    Calibrator(
        name="0834+555",
        aliases=("J0834+5534", "4C+55.16"),
        ra_deg=128.72876667,  # 08h34m54.904s
        dec_deg=55.57251944,  # +55d34m21.07s
        flux_jy=8.8,
        ref_freq_hz=1.4e9,
        spectral_index=-0.38,
        reference="VLA calibrator list (20 cm: 8.8 Jy; 6 cm: 5.6 Jy); index fitted near 1.4 GHz",
    ),
)


def normalise_name(name: str) -> str:
    """Canonical spelling for matching: upper case, no spaces, no B/J prefix."""
    text = re.sub(r"\s+", "", name.strip().upper())
    if re.match(r"^[BJ]\d", text):
        text = text[1:]
    return text


def lookup_calibrator(name: str, catalog=BUILTIN_CALIBRATORS) -> Calibrator:
    """Find a calibrator by any of its names; raise ContimgError if unknown."""
    wanted = normalise_name(name)
    for calibrator in catalog:
        spellings = {normalise_name(n) for n in (calibrator.name, *calibrator.aliases)}
        if wanted in spellings:
            return calibrator
    known = ", ".join(c.name for c in catalog)
    raise ContimgError(f"unknown calibrator {name!r}; known calibrators: {known}")
