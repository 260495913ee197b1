"""CASA's gaincal and bandpass parameters read as one native solve's request, checked.

What the native engine does not do is refused here in one line, before any data
are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.calibration import solver_kernels as kernels
from dsa110_contimg.errors import ContimgError

PER_INTEGRATION_S = 1e-6  # a solution interval shorter than any integration


@dataclass(frozen=True)
class SolveRequest:
    """What CASA's parameters ask of one solve, checked."""

    kind: str  # "G", "B" or "K" (delays)
    spw: int  # the SPW whose solutions these are (the first of ``spws``)
    spws: tuple[int, ...]  # the SPWs solved together (combine 'spw'), else (spw,)
    fields: tuple[int, ...]
    solint_s: float  # inf: one interval
    combine_scan: bool
    combine_field: bool
    calmode: str  # "ap", "p" (phase only) or "a" (amplitude only)
    uv_range: tuple[float, float, bool]  # min, max, in wavelengths (else metres)
    minsnr: float
    minblperant: int
    solnorm: bool
    fillgaps: int
    refant: str
    priors: tuple[tuple[str, str, tuple[int, ...]], ...]  # (table, interp, spwmap)


def parse_solint(text: str) -> float:
    """CASA's solint in seconds: ``inf``, ``int`` (each integration), ``30s``, ``2min``,
    ``1h`` or a number of seconds."""
    text = str(text).strip().lower()
    if text in ("inf", ""):
        return np.inf
    if text == "int":
        return PER_INTEGRATION_S
    match = re.fullmatch(r"([0-9.]+)\s*(s|sec|min|m|h)?", text)
    if not match:
        raise ContimgError(f"the native engine does not understand solint {text!r}")
    scale = {"s": 1, "sec": 1, None: 1, "min": 60, "m": 60, "h": 3600}[match[2]]
    return float(match[1]) * scale


def parse_uvrange(text: str) -> tuple[float, float, bool]:
    """(min, max, in wavelengths) uv distance from CASA's uvrange (``>1klambda``,
    ``<500lambda``, ``1~10klambda``, ``>100m``, ``0.1~2km``; no unit: metres)."""
    text = str(text or "").strip().lower().replace(" ", "")
    if not text:
        return 0.0, np.inf, True
    units = {"lambda": (1.0, True), "klambda": (1e3, True), "mlambda": (1e6, True),
             "m": (1.0, False), "km": (1e3, False), "": (1.0, False)}  # fmt: skip
    match = re.fullmatch(r"(>|<)?([0-9.]+)(?:~([0-9.]+))?(klambda|mlambda|lambda|km|m)?", text)
    if not match:
        raise ContimgError(f"the native engine does not understand uvrange {text!r}")
    scale, in_wavelengths = units[match[4] or ""]
    low, high = float(match[2]) * scale, (float(match[3]) * scale if match[3] else None)
    if match[1] == ">":
        return low, np.inf, in_wavelengths
    if match[1] == "<":
        return 0.0, low, in_wavelengths
    return low, (high if high is not None else low), in_wavelengths


def request_from_parameters(task: str, parameters: dict) -> SolveRequest:
    """The request CASA's ``gaincal``/``bandpass`` parameters make; one line for what the
    native engine does not do."""
    combine = {c.strip() for c in str(parameters.get("combine", "")).split(",") if c.strip()}
    if "spw" in combine and task == "bandpass":
        raise ContimgError("the native engine solves a bandpass per SPW: combine 'spw' needs "
                           "--engine casa")  # fmt: skip
    gaintype = parameters.get("gaintype", "G") if task == "gaincal" else "B"
    if task == "gaincal" and gaintype not in ("G", "K"):
        raise ContimgError(f"the native engine solves gaintype G or K, not {gaintype!r}")
    if gaintype == "K" and "spw" in combine:
        raise ContimgError("the native engine solves delays per SPW: combine 'spw' needs "
                           "--engine casa")  # fmt: skip
    calmode = parameters.get("calmode", "ap") if task == "gaincal" else "ap"
    if calmode not in kernels.CALMODES:
        raise ContimgError(f"the native engine solves calmode 'ap', 'p' or 'a', not {calmode!r}")
    spw = str(parameters.get("spw", ""))
    spws = tuple(int(s) for s in spw.split(",") if s.strip().isdigit())
    if not spws or len(spws) != len(spw.split(",")) or (len(spws) > 1 and "spw" not in combine):
        raise ContimgError(f"the native engine solves one SPW, or SPWs listed by id with "
                           f"combine 'spw', not spw {spw!r}")  # fmt: skip
    fields = tuple(int(f) for f in str(parameters.get("field", "")).split(",") if f.strip())
    gaintable = list(parameters.get("gaintable") or [])
    interp = list(parameters.get("interp") or []) + [""] * len(gaintable)
    spwmap = list(parameters.get("spwmap") or []) + [[]] * len(gaintable)
    priors = tuple(
        (str(t), str(i or "linear"), tuple(int(s) for s in m))
        for t, i, m in zip(gaintable, interp, spwmap, strict=False)
    )
    return SolveRequest(
        kind=gaintype,
        spw=spws[0],
        spws=spws,
        fields=fields,
        solint_s=parse_solint(parameters.get("solint", "inf")),
        combine_scan="scan" in combine,
        combine_field="field" in combine,
        calmode=calmode,
        uv_range=parse_uvrange(parameters.get("uvrange", "")),
        minsnr=float(parameters.get("minsnr", 3.0)),
        minblperant=int(parameters.get("minblperant", 4)),
        solnorm=bool(parameters.get("solnorm", False)),
        fillgaps=int(parameters.get("fillgaps", 0)) if task == "bandpass" else 0,
        refant=str(parameters.get("refant", "")),
        priors=priors,
    )
