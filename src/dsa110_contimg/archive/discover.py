"""Find the Measurement Sets of an archive and say what each one is.

Inputs are MS paths, directories (searched for ``*.ms``, skipping hidden
ones and this project's outputs) or text files listing paths (one per line,
``#`` comments). Each MS gets a fingerprint of its files (names, sizes,
modification times: cheap, and it changes whenever the data are rewritten),
its time range and its role: ``calibrator`` when a catalog calibrator
transits its primary beam (peak response at least ``min_response``),
``target`` otherwise.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.reads import require_ms, time_range


@dataclass(frozen=True)
class ArchiveEntry:
    path: str
    fingerprint: str
    start_mjd_s: float
    end_mjd_s: float
    role: str  # "calibrator" or "target"
    calibrator: str | None  # catalog name for a calibrator file
    apparent_flux_jy: float

    @property
    def mid_mjd_s(self) -> float:
        return 0.5 * (self.start_mjd_s + self.end_mjd_s)


def _is_ms(path: Path) -> bool:
    return path.is_dir() and (path / "table.dat").exists() and (path / "ANTENNA").is_dir()


def expand_inputs(inputs) -> list[Path]:
    """Every MS named by ``inputs`` (paths, directories, list files), absolute, each once."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise ContimgError(f"{path} does not exist")
        if _is_ms(path):
            found.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.ms")):
                hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
                if not hidden and _is_ms(candidate):
                    found.append(candidate)
        elif path.is_file():
            base = path.parent
            for line in _list_file_lines(path):
                line = line.split("#", 1)[0].strip()
                if line:
                    listed = Path(line) if Path(line).is_absolute() else base / line
                    found.append(listed)
        else:
            raise ContimgError(f"{path} is neither an MS, a directory nor a list of paths")
    unique = []
    seen = set()
    for path in found:
        resolved = path.absolute()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(resolved)
    if not unique:
        raise ContimgError(f"no Measurement Sets found in {', '.join(map(str, inputs))}")
    return unique


def _list_file_lines(path: Path) -> list[str]:
    """The lines of a text file listing MS paths; one clear error for anything else."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ContimgError(f"{path} cannot be read: {err.strerror}") from None
    if b"\0" in data:
        raise ContimgError(
            f"{path} is neither an MS, a directory nor a text list of MS paths (binary file)"
        )
    try:
        return data.decode().splitlines()
    except UnicodeDecodeError:
        raise ContimgError(f"{path} is not a UTF-8 text list of MS paths") from None


def fingerprint(ms) -> str:
    """SHA-256 of (relative path, size, mtime) of every file of the MS."""
    ms = Path(ms)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(ms):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            stat = full.stat()
            digest.update(f"{full.relative_to(ms)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def describe(ms, catalog, min_response: float) -> ArchiveEntry:
    """Fingerprint, time range and role of one MS; a ContimgError if it cannot be read."""
    from dsa110_contimg.phasing.geometry import brightest_calibrator_in_beam

    ms = require_ms(ms)
    try:
        start, end = time_range(ms)
        calibrator, flux = brightest_calibrator_in_beam(ms, catalog, min_response)
    except ContimgError:
        raise
    except Exception as error:  # noqa: BLE001 - an unreadable MS is reported, not raised
        raise ContimgError(f"{ms} cannot be read: {type(error).__name__}: {error}") from None
    return ArchiveEntry(
        path=str(ms),
        fingerprint=fingerprint(ms),
        start_mjd_s=start,
        end_mjd_s=end,
        role="calibrator" if calibrator is not None else "target",
        calibrator=None if calibrator is None else calibrator.name,
        apparent_flux_jy=float(flux),
    )


def nearest_calibrator(target: ArchiveEntry, calibrators, validity_s: float):
    """The calibrator entry nearest in time to ``target`` within ``validity_s``, or None."""
    best, best_gap = None, float("inf")
    for entry in calibrators:
        gap = abs(entry.mid_mjd_s - target.mid_mjd_s)
        if gap <= validity_s and gap < best_gap:
            best, best_gap = entry, gap
    return best
