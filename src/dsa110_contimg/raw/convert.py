"""Subband files to Measurement Sets: one MS per observation, on the Dask cluster.

Planning reads every file's header (no data) and refuses, one line per
observation, what cannot make a sound MS: a missing subband (unless
partial observations are allowed), a file that is not UVH5, subbands that
differ in channels, integrations or correlations, phased files. Each
observation then becomes a small graph: a task per subband file (read,
UVWs from the antenna positions, each integration phased to its meridian,
written as its own single-SPW MS: one writer per table, so the writes run in
parallel) and a task that joins them as the SPWs, in ascending frequency,
of one Multi-MS (which CASA and dask-ms read as one MS) under a hidden
name, checks it and renames it into place.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.mms import assemble_mms, join_as_spws
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.ms.validate import check_converted_ms
from dsa110_contimg.ms.writes import write_uvdata_ms
from dsa110_contimg.raw import uvh5
from dsa110_contimg.raw.groups import SubbandGroup, expand_raw_inputs, group_subbands
from dsa110_contimg.simulate.truth import truth_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversionJob:
    group: SubbandGroup
    output_ms: str
    partial: bool  # converted with the subbands it has
    headers: tuple[uvh5.SubbandHeader, ...] = ()  # one per file, as planning read them


@dataclass(frozen=True)
class ConversionPlan:
    jobs: tuple[ConversionJob, ...]
    refused: tuple[tuple[str, str], ...]  # (observation, reason)


def output_path(out, name: str, n_groups: int) -> Path:
    """``out`` itself when it names one MS (``X.ms``), else ``out/<name>.ms``."""
    out = Path(out)
    if out.suffix == ".ms":
        if n_groups != 1:
            raise ContimgError(
                f"--out {out} names one MS but the input holds {n_groups} observations: "
                "give a directory"
            )
        return out.absolute()
    return (out / f"{name}.ms").absolute()


def plan_conversion(inputs, out, allow_partial: bool = False, tolerance_s: float = 0.0,
                    overwrite: bool = False) -> ConversionPlan:  # fmt: skip
    """Group the inputs and check every file's header; decide every output path."""
    groups = group_subbands(expand_raw_inputs(inputs), tolerance_s)
    jobs, refused = [], []
    for group in groups:
        target = output_path(out, group.name, len(groups))
        headers, reason = _headers(group, allow_partial)
        reason = reason or _refusal(headers)
        if reason is None and target.exists() and not overwrite:
            reason = f"{target} already exists; pass --overwrite to replace it"
        if reason is None:
            jobs.append(ConversionJob(group, str(target), not group.complete, headers))
        else:
            refused.append((group.name, reason))
    return ConversionPlan(tuple(jobs), tuple(refused))


def _headers(group: SubbandGroup, allow_partial: bool) -> tuple[tuple, str | None]:
    """(the files' headers, None) or ((), why they are not read)."""
    if group.missing and not allow_partial:
        return (), (
            f"missing {group.describe_missing()} ({len(group.files)} of {group.expected} "
            "subbands); skipped (--allow-partial converts what is there)"
        )
    try:
        return tuple(uvh5.read_header(f.path) for f in group.files), None
    except ContimgError as err:
        return (), str(err)


def _refusal(headers) -> str | None:
    """Why subband files with these headers cannot make one MS, or None."""
    if not headers:
        return None
    first = headers[0]
    for header in headers:
        name = Path(header.path).name
        if not header.drift:
            return f"{name} is phased, not a drift scan: convert takes unphased correlator files"
        if header.n_chan != first.n_chan:
            return (
                f"subbands differ in channels ({Path(first.path).name}: {first.n_chan}, "
                f"{name}: {header.n_chan})"
            )
        if header.times_jd != first.times_jd:
            return f"subbands hold different integrations ({Path(first.path).name}, {name})"
        if header.n_pol != first.n_pol:
            return f"subbands differ in correlations ({Path(first.path).name}, {name})"
    edges = sorted((h.freq_min_hz, h.freq_max_hz) for h in headers)
    if any(lo <= prev_hi for (_, prev_hi), (lo, _) in zip(edges, edges[1:], strict=False)):
        return "subbands overlap in frequency: a file is there twice under another name"
    return None


def format_plan(plan: ConversionPlan) -> str:
    lines = []
    for job in plan.jobs:
        g = job.group
        lines.append(
            f"{g.name}: {len(g.files)} of {g.expected} subband(s) -> {job.output_ms}"
            + (f" (partial: missing {g.describe_missing()})" if job.partial else "")
        )
    for name, reason in plan.refused:
        lines.append(f"{name}: refused: {reason}")
    return "\n".join(lines)


def work_dir(job: ConversionJob) -> Path:
    """Where the observation's per-subband MSs are written before they are joined."""
    final = Path(job.output_ms)
    return final.with_name(f".{final.name}.subbands")


def _convert_subband(path: str, sub_ms: str) -> dict:
    """One Dask task: a subband file read, phased and written as a single-SPW MS."""
    uv = uvh5.read_phased_subband(path)
    write_uvdata_ms(uv, sub_ms)
    return {
        "sub_ms": sub_ms,
        "freq_min_hz": float(np.min(uv.freq_array)),
        "rows": int(uv.Nblts),
        "antenna_numbers": np.asarray(uv.telescope.antenna_numbers),
        "antenna_positions_m": _absolute_positions(uv),
        "meridian_ra_rad": _field_ras(uv),
        "pointing_dec_rad": uvh5.pointing_dec_rad(uv),
    }


def _join_observation(subbands, job: ConversionJob) -> dict:
    """One Dask task: the subbands' MSs joined as the SPWs (ascending) of one Multi-MS,
    checked, and published under the observation's name."""
    ordered = sorted(subbands, key=lambda s: s["freq_min_hz"])
    members = [s["sub_ms"] for s in ordered]
    first = ordered[0]
    try:
        join_as_spws(members)
        with publish_directory(job.output_ms) as partial:
            assemble_mms(members, partial)
            verdicts = check_converted_ms(
                partial, first["antenna_numbers"], first["antenna_positions_m"],
                first["meridian_ra_rad"], first["pointing_dec_rad"],
            )  # fmt: skip
            failed = [line for ok, line in verdicts if not ok]
            if failed:
                raise ContimgError(
                    f"{job.group.name}: the converted MS failed a check: {failed[0]}"
                )
    finally:
        shutil.rmtree(work_dir(job), ignore_errors=True)
    truth = _truth_beside(job.group)
    if truth is not None:
        shutil.copyfile(truth, truth_path(job.output_ms))
    return {
        "observation": job.group.name,
        "ms": job.output_ms,
        "subbands": [f.index for f in job.group.files],
        "missing": list(job.group.missing),
        "rows": int(sum(s["rows"] for s in ordered)),
        "checks": [line for _, line in verdicts],
    }


def _absolute_positions(uv) -> np.ndarray:
    """(antenna, 3) ITRF positions of the files' antennas, metres."""
    location = uv.telescope.location
    centre = np.array([location.x.to_value("m"), location.y.to_value("m"),
                       location.z.to_value("m")])  # fmt: skip
    return np.asarray(uv.telescope.antenna_positions, float) + centre


def _field_ras(uv) -> dict:
    """Field name -> the meridian RA of its integration (radians)."""
    longitude = float(uv.telescope.location.lon.deg)
    return {
        uvh5.field_name(i): float(uvh5.meridian_ra_rad(t, longitude))
        for i, t in enumerate(np.unique(uv.time_array))
    }


def _truth_beside(group: SubbandGroup) -> Path | None:
    """The simulation truth written beside the subband files, if any."""
    folder = Path(group.files[0].path).parent
    candidate = folder / f"{group.name}.truth.npz"
    return candidate if candidate.exists() else None


def add_conversion_graph(job: ConversionJob):
    """Delayed result of one observation: a task per subband file (read, phase, write its
    own MS), then one task joining them."""
    folder = work_dir(job)
    shutil.rmtree(folder, ignore_errors=True)  # what a killed run left
    folder.mkdir(parents=True)
    subbands = [
        dask.delayed(_convert_subband, pure=False)(
            f.path,
            str(folder / f"sb{f.index:02d}.ms"),
            dask_key_name=f"convert-{job.group.name}-sb{f.index:02d}",
        )  # fmt: skip
        for f in job.group.files
    ]
    return dask.delayed(_join_observation, pure=False)(
        subbands, job, dask_key_name=f"join-{job.group.name}"
    )


def run_conversion(plan: ConversionPlan, client) -> list[dict]:
    """Every job's graph on ``client``; a result per observation (``error`` when it failed)."""
    futures = {job.group.name: client.compute(add_conversion_graph(job)) for job in plan.jobs}
    jobs = {job.group.name: job for job in plan.jobs}
    return [conversion_result(jobs[name], future) for name, future in futures.items()]


def conversion_result(job: ConversionJob, future) -> dict:
    """The observation's result, or its failure as one line (the others go on); a failed
    conversion leaves nothing behind."""
    result = _result(job.group.name, future)
    if result.get("error"):
        shutil.rmtree(work_dir(job), ignore_errors=True)
    return result


def _result(name, future) -> dict:
    try:
        return future.result()
    except ContimgError as err:
        return {"observation": name, "ms": None, "error": str(err)}
    except Exception as err:  # noqa: BLE001 - one observation fails, the others go on
        log.debug("conversion of %s failed", name, exc_info=True)
        reason = " ".join(str(err).split()) or type(err).__name__
        return {"observation": name, "ms": None,
                "error": f"{name}: {type(err).__name__}: {reason}"}  # fmt: skip
