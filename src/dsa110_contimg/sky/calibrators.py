"""Built-in catalog of bright calibrators visible from the DSA-110 site.

Every entry gives its J2000 position, a reference flux density at a reference
frequency and a spectral index valid near 1.4 GHz, with the source of the
figures. Names can be looked up in any common spelling: B1950 (``0834+555``),
J2000 (``J0834+5534``) or a common name (``3C286``).
"""

from __future__ import annotations

import dataclasses
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


def _vla_index(flux_20cm, flux_6cm):
    """Spectral index between the VLA list's 20 cm (1.4 GHz) and 6 cm (4.86 GHz) fluxes."""
    return float(
        np.log(flux_6cm / flux_20cm) / np.log(VLA_BAND_FREQ_HZ["C"] / VLA_BAND_FREQ_HZ["L"])
    )


# Representative frequencies of the VLA calibrator list's bands.
VLA_BAND_FREQ_HZ = {
    "4": 74e6, "P": 330e6, "L": 1.4e9, "C": 4.86e9, "X": 8.46e9,
    "U": 14.94e9, "K": 22.46e9, "Q": 43.34e9,
}  # fmt: skip

_VLA_LIST = "NRAO VLA calibrator list, J2000 position; flux at 20 cm"

BUILTIN_CALIBRATORS = (
    Calibrator(
        name="0834+555",
        aliases=("J0834+5534", "4C+55.16", "4C55.16"),
        ra_deg=128.72876667,  # 08h34m54.904s
        dec_deg=55.57251944,  # +55d34m21.07s
        flux_jy=8.8,
        ref_freq_hz=1.4e9,
        spectral_index=-0.38,
        reference=f"{_VLA_LIST} (8.8 Jy; 6 cm 5.6 Jy); index -0.38 fitted near 1.4 GHz",
    ),
    Calibrator(
        name="3C48",
        aliases=("J0137+3309", "0134+329", "3C 48"),
        ra_deg=24.42208096,  # 01h37m41.299431s
        dec_deg=33.15975916,  # +33d09m35.13299s
        flux_jy=16.5,
        ref_freq_hz=1.4e9,
        spectral_index=_vla_index(16.5, 5.48),
        reference=f"{_VLA_LIST} (16.5 Jy); index from 6 cm (5.48 Jy)",
    ),
    Calibrator(
        name="3C138",
        aliases=("J0521+1638", "0518+165", "3C 138"),
        ra_deg=80.29119175,  # 05h21m09.886021s
        dec_deg=16.63945867,  # +16d38m22.05122s
        flux_jy=8.47,
        ref_freq_hz=1.4e9,
        spectral_index=_vla_index(8.47, 3.86),
        reference=f"{_VLA_LIST} (8.47 Jy); index from 6 cm (3.86 Jy)",
    ),
    Calibrator(
        name="3C147",
        aliases=("J0542+4951", "0538+498", "3C 147"),
        ra_deg=85.65057465,  # 05h42m36.137916s
        dec_deg=49.85200932,  # +49d51m07.23356s
        flux_jy=22.5,
        ref_freq_hz=1.4e9,
        spectral_index=_vla_index(22.5, 8.18),
        reference=f"{_VLA_LIST} (22.5 Jy); index from 6 cm (8.18 Jy)",
    ),
    Calibrator(
        name="3C286",
        aliases=("J1331+3030", "1328+307", "3C 286"),
        ra_deg=202.78453327,  # 13h31m08.287984s
        dec_deg=30.50915524,  # +30d30m32.95885s
        flux_jy=15.0,
        ref_freq_hz=1.4e9,
        spectral_index=_vla_index(15.0, 7.47),
        reference=f"{_VLA_LIST} (15.0 Jy); index from 6 cm (7.47 Jy)",
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


def nearest_calibrator(ra_deg, dec_deg, radius_deg, catalog=BUILTIN_CALIBRATORS):
    """The catalog entry closest to (ra_deg, dec_deg) within ``radius_deg``, or None."""
    from dsa110_contimg.sky.coordinates import angular_separation

    best, best_sep = None, np.inf
    for calibrator in catalog:
        sep = np.degrees(
            angular_separation(
                np.radians(ra_deg), np.radians(dec_deg), calibrator.ra_rad, calibrator.dec_rad
            )
        )
        if sep <= radius_deg and sep < best_sep:
            best, best_sep = calibrator, sep
    return best


def parse_sexagesimal(text: str, hours: bool) -> float:
    """``08h34m54.9s``, ``08:34:54.9``, ``55d34'21.07"`` or ``-00:30:00`` -> degrees."""
    cleaned = re.sub(r"[hdms:'\"]", " ", text.strip()).split()
    if not cleaned:
        raise ContimgError(f"cannot read angle {text!r}")
    sign = -1.0 if cleaned[0].startswith("-") else 1.0
    parts = [abs(float(x)) for x in cleaned] + [0.0, 0.0]
    value = parts[0] + parts[1] / 60 + parts[2] / 3600
    return sign * value * (15.0 if hours else 1.0)


_VLA_BAND_LINE = re.compile(r"^\s*[\d.]+(?:cm|mm)\s+([4PLCXUKQ])\s+(?:[A-Z?]\s+){4}\s*([\d.]+)")


def read_vla_calibrator_list(path) -> tuple[Calibrator, ...]:
    """Parse the NRAO VLA calibrator list text format.

    Each source block starts with its J2000 line
    (``J0834+5534  J2000  A 08h34m54.903995s  55d34'21.070460"  Aug01  4C55.16``),
    may give its B1950 name on the next line, and lists flux densities per
    band (``20cm    L  P P S S       8.80``). The reference flux is the 20 cm
    value (1.4 GHz); the spectral index comes from 20 cm and 6 cm when both
    exist, else -0.7.
    """
    entries = []
    current = None
    for line in open(path, encoding="utf-8", errors="replace"):
        tokens = line.split()
        if len(tokens) >= 5 and tokens[1] == "J2000":
            if current:
                entries.append(current)
            current = {
                "name": tokens[0],
                "aliases": [t for t in tokens[6:7] if not t.isdigit()],
                "ra": parse_sexagesimal(tokens[3], hours=True),
                "dec": parse_sexagesimal(tokens[4], hours=False),
                "flux": {},
            }
        elif current and len(tokens) >= 2 and tokens[1] == "B1950":
            current["aliases"].append(tokens[0])
        elif current and (match := _VLA_BAND_LINE.match(line)):
            current["flux"][match.group(1)] = float(match.group(2))
    if current:
        entries.append(current)
    calibrators = []
    for entry in entries:
        flux = entry["flux"]
        if "L" not in flux:
            continue
        index = _vla_index(flux["L"], flux["C"]) if "C" in flux else -0.7
        calibrators.append(
            Calibrator(
                name=entry["name"],
                aliases=tuple(entry["aliases"]),
                ra_deg=entry["ra"],
                dec_deg=entry["dec"],
                flux_jy=flux["L"],
                ref_freq_hz=VLA_BAND_FREQ_HZ["L"],
                spectral_index=index,
                reference=f"VLA calibrator list file {path}",
            )
        )
    if not calibrators:
        raise ContimgError(f"{path}: no calibrators with a 20 cm flux found (VLA list format?)")
    return tuple(calibrators)


def read_calibrator_csv(path) -> tuple[Calibrator, ...]:
    """Read a user catalog: CSV with a header.

    Required columns: ``name``, ``ra_deg``, ``dec_deg``, ``flux_jy``,
    ``ref_freq_hz`` (or ``ref_freq_mhz``/``ref_freq_ghz``), ``spectral_index``.
    Optional: ``aliases`` (separated by ``;``). ``ra_deg``/``dec_deg`` also
    accept sexagesimal strings (``08:34:54.9``, ``+55:34:21``).
    """
    import csv

    calibrators = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(
            line for line in handle if line.strip() and not line.lstrip().startswith("#")
        )
        for number, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                if "ref_freq_hz" in row:
                    freq = float(row["ref_freq_hz"])
                elif "ref_freq_mhz" in row:
                    freq = float(row["ref_freq_mhz"]) * 1e6
                else:
                    freq = float(row["ref_freq_ghz"]) * 1e9
                calibrators.append(
                    Calibrator(
                        name=row["name"],
                        aliases=tuple(a.strip() for a in row.get("aliases", "").split(";") if a),
                        ra_deg=_angle_field(row["ra_deg"], hours=True),
                        dec_deg=_angle_field(row["dec_deg"], hours=False),
                        flux_jy=float(row["flux_jy"]),
                        ref_freq_hz=freq,
                        spectral_index=float(row["spectral_index"]),
                        reference=f"user catalog {path}",
                    )
                )
            except (KeyError, ValueError) as err:
                raise ContimgError(
                    f"{path}, line {number}: cannot read calibrator ({err})"
                ) from err
    if not calibrators:
        raise ContimgError(f"{path}: no calibrators found")
    return tuple(calibrators)


def _angle_field(text: str, hours: bool) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_sexagesimal(text, hours=hours)


def load_catalog(path=None) -> tuple[Calibrator, ...]:
    """The built-in catalog, or a user file (``.csv`` or the VLA list text format)."""
    if path is None:
        return BUILTIN_CALIBRATORS
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ContimgError(f"calibrator catalog {path} does not exist")
    if path.suffix.lower() == ".csv":
        return read_calibrator_csv(path)
    return read_vla_calibrator_list(path)


@dataclass(frozen=True)
class CalibratorRequest:
    """What a user said about the calibrator: a name or a position, and optionally its flux.

    ``flux_jy`` at ``ref_freq_hz`` (default: the data's centre frequency)
    with ``spectral_index`` (default 0) replaces a catalog source's spectrum
    or gives one to a position.
    """

    name: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    flux_jy: float | None = None
    ref_freq_hz: float | None = None
    spectral_index: float | None = None

    @property
    def given(self) -> bool:
        return bool(self.name) or self.ra_deg is not None or self.dec_deg is not None


UNKNOWN_FLUX = "flux unknown"


def resolve_calibrator(
    request: CalibratorRequest, catalog=BUILTIN_CALIBRATORS, centre_freq_hz: float | None = None
) -> Calibrator:
    """The calibrator ``request`` names, with the user's flux when given.

    A position within 1 arcmin of a catalog source is that source. A position
    elsewhere without ``flux_jy`` gets 1 Jy and a ``reference`` starting
    ``flux unknown`` (see :func:`require_known_flux`).
    """
    r = request
    if r.name and (r.ra_deg is not None or r.dec_deg is not None):
        raise ContimgError(
            "give the calibrator by --calibrator NAME or by --cal-ra/--cal-dec, not both"
        )
    spectrum_given = (r.flux_jy, r.ref_freq_hz, r.spectral_index) != (None, None, None)
    if not r.given:
        if spectrum_given:
            raise ContimgError("--cal-flux/--cal-ref-freq/--cal-index describe a calibrator: "
                               "give it with --calibrator NAME or --cal-ra/--cal-dec")  # fmt: skip
        raise ContimgError("give --calibrator NAME or both --cal-ra and --cal-dec (degrees)")
    if r.flux_jy is None and spectrum_given:
        raise ContimgError("--cal-ref-freq and --cal-index need --cal-flux")
    if r.flux_jy is not None and not (np.isfinite(r.flux_jy) and r.flux_jy > 0):
        raise ContimgError(f"--cal-flux must be a positive number of Jy, not {r.flux_jy}")
    if r.ref_freq_hz is not None and not (np.isfinite(r.ref_freq_hz) and r.ref_freq_hz > 0):
        raise ContimgError(
            f"--cal-ref-freq must be a positive frequency in Hz, not {r.ref_freq_hz}"
        )
    if r.spectral_index is not None and not (np.isfinite(r.spectral_index) and
                                             abs(r.spectral_index) < 10):  # fmt: skip
        raise ContimgError(
            f"--cal-index must be a number between -10 and 10, not {r.spectral_index}"
        )
    if r.name:
        source = lookup_calibrator(r.name, catalog)
    else:
        if r.ra_deg is None or r.dec_deg is None:
            raise ContimgError("give both --cal-ra and --cal-dec (degrees)")
        if not (0 <= r.ra_deg < 360 and -90 <= r.dec_deg <= 90):
            raise ContimgError("--cal-ra must be in [0, 360) and --cal-dec in [-90, 90] degrees")
        source = nearest_calibrator(r.ra_deg, r.dec_deg, radius_deg=1 / 60, catalog=catalog)
        if source is None:
            source = Calibrator(
                name=f"RA{r.ra_deg:.4f}_Dec{r.dec_deg:+.4f}",
                aliases=(),
                ra_deg=r.ra_deg,
                dec_deg=r.dec_deg,
                flux_jy=1.0,
                ref_freq_hz=centre_freq_hz or 1.4e9,
                spectral_index=0.0,
                reference=f"{UNKNOWN_FLUX}: position given on the command line, 1 Jy assumed",
            )
    if r.flux_jy is None:
        return source
    ref_freq = r.ref_freq_hz or centre_freq_hz or source.ref_freq_hz
    index = 0.0 if r.spectral_index is None else r.spectral_index
    return dataclasses.replace(
        source,
        flux_jy=float(r.flux_jy),
        ref_freq_hz=float(ref_freq),
        spectral_index=float(index),
        reference=f"flux given on the command line: {r.flux_jy:g} Jy at "
        f"{ref_freq / 1e6:.3f} MHz, spectral index {index:g}",
    )


def require_known_flux(calibrator: Calibrator, what: str) -> None:
    """Refuse to set a flux scale or write a model from a guessed 1 Jy."""
    if calibrator.reference.startswith(UNKNOWN_FLUX):
        raise ContimgError(
            f"{calibrator.name} is not in the catalog and its flux is unknown: {what} needs "
            "it; give --cal-flux JY (and --cal-ref-freq HZ, --cal-index ALPHA)"
        )
