"""An archive of raw subband files: each observation converted once, then reprocessed as an MS.

The manifest holds one record per observation (role ``subbands``, keyed
``<folder>/<time stamp>_sb*.hdf5``): the fingerprint of its files and the
converted MS. A rerun converts again only an observation whose files
changed (or whose MS is gone). An observation to convert enters the archive
plan as a pending entry described from its headers (its role and time), so
its conversion and its calibration run in one graph; an unchanged one is
planned from its MS like any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg import instrument
from dsa110_contimg.archive.discover import ArchiveEntry
from dsa110_contimg.archive.manifest import DONE, Manifest
from dsa110_contimg.raw.convert import ConversionJob, ConversionPlan, format_plan, plan_conversion
from dsa110_contimg.raw.groups import RAW_SUFFIXES, SubbandGroup
from dsa110_contimg.raw.uvh5 import JD_MJD

RAW_ROLE = "subbands"
CONVERTED_DIR = "converted"


@dataclass(frozen=True)
class RawPlan:
    conversions: ConversionPlan  # observations to convert (new or changed)
    ready: tuple[str, ...]  # converted earlier, files unchanged: their MS
    fingerprints: dict  # group key -> fingerprint of its files


def _is_raw_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RAW_SUFFIXES


def split_inputs(inputs) -> tuple[list[str], list[str]]:
    """(raw inputs, MS inputs): UVH5 files and folders holding them are raw; a folder
    holding Measurement Sets as well is both."""
    raw, ms = [], []
    for item in inputs:
        path = Path(item)
        if _is_raw_file(path):
            raw.append(str(item))
        elif path.is_dir() and any(_is_raw_file(p) for p in path.iterdir()):
            raw.append(str(item))
            if any(path.rglob("*.ms")):
                ms.append(str(item))
        else:
            ms.append(str(item))
    return raw, ms


def group_key(group: SubbandGroup) -> str:
    folder = Path(group.files[0].path).parent
    if group.expected == 1:
        return group.files[0].path
    return str(folder / f"{group.name}_sb*.hdf5")


def file_fingerprint(path) -> str:
    """SHA-256 of a file's name, size and modification time."""
    stat = Path(path).stat()
    return hashlib.sha256(
        f"{Path(path).name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    ).hexdigest()


def group_fingerprint(group: SubbandGroup) -> str:
    """SHA-256 of the fingerprints of every file of the observation."""
    digest = hashlib.sha256()
    for f in group.files:
        digest.update(file_fingerprint(f.path).encode())
    return digest.hexdigest()


def plan_raw(inputs, out_dir, manifest: Manifest, allow_partial: bool = False,
             tolerance_s: float = 0.0) -> RawPlan:  # fmt: skip
    """The observations to convert into ``out_dir/converted`` and the MSs already there."""
    plan = plan_conversion(inputs, Path(out_dir) / CONVERTED_DIR, allow_partial, tolerance_s,
                           overwrite=True)  # fmt: skip
    todo, ready, fingerprints = [], [], {}
    for job in plan.jobs:
        key, fingerprint = group_key(job.group), group_fingerprint(job.group)
        fingerprints[key] = fingerprint
        record = manifest.get(key)
        unchanged = (
            record is not None
            and record["state"] == DONE
            and record["fingerprint"] == fingerprint
            and all(Path(p).exists() for p in record["outputs"])
        )
        (ready if unchanged else todo).append(job.output_ms if unchanged else job)
    return RawPlan(ConversionPlan(tuple(todo), plan.refused), tuple(ready), fingerprints)


def format_raw_plan(raw: RawPlan) -> str:
    lines = [
        f"{len(raw.conversions.jobs)} observation(s) of subband files to convert, "
        f"{len(raw.ready)} converted and unchanged, {len(raw.conversions.refused)} refused"
    ]
    text = format_plan(raw.conversions)
    return "\n".join(lines + ([text] if text else []))


def pending_entry(job: ConversionJob, catalog, min_response: float) -> ArchiveEntry:
    """The archive entry of an observation still to convert, from its files' headers: the
    converted MS's fields point at each integration's meridian at the pointing Dec."""
    from dsa110_contimg.phasing.geometry import brightest_in_beam

    first = job.headers[0]
    centre = 0.5 * (min(h.freq_min_hz for h in job.headers)
                    + max(h.freq_max_hz for h in job.headers))  # fmt: skip
    ras = first.meridian_ras_rad
    calibrator, flux = brightest_in_beam(
        ras, np.full_like(ras, first.pointing_dec_rad), centre,
        first.dish_diameter_m or instrument.DISH_DIAMETER_M, catalog, min_response,
    )  # fmt: skip
    times_s = (np.asarray(first.times_jd) - JD_MJD) * 86400.0
    return ArchiveEntry(
        path=job.output_ms,
        fingerprint="",  # known once converted
        start_mjd_s=float(times_s.min()),
        end_mjd_s=float(times_s.max()),
        role="calibrator" if calibrator is not None else "target",
        calibrator=None if calibrator is None else calibrator.name,
        apparent_flux_jy=float(flux),
    )


def register_conversions(raw: RawPlan, manifest: Manifest) -> None:
    """Every observation to convert as running (with its files), every refusal as failed."""
    for job in raw.conversions.jobs:
        key = group_key(job.group)
        manifest.register(key, RAW_ROLE, raw.fingerprints[key])
        manifest.record_inputs(
            key,
            [{"path": f.path, "fingerprint": file_fingerprint(f.path)} for f in job.group.files],
        )
        manifest.mark_running(key)
    for name, reason in raw.conversions.refused:
        key = f"{name} (subbands)"
        if manifest.get(key) is None:
            manifest.register(key, RAW_ROLE, "")
        manifest.mark_failed(key, reason)


def record_conversion(job: ConversionJob, result: dict, manifest: Manifest, seconds: float):
    """One observation converted (or not) into the manifest."""
    key = group_key(job.group)
    if result.get("error"):
        manifest.mark_failed(key, result["error"], seconds)
    else:
        manifest.mark_done(key, [result["ms"]], [], seconds)
