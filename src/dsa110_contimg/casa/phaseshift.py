"""CASA ``phaseshift`` as a leaf task that publishes its output by rename."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dsa110_contimg import casa_env
from dsa110_contimg.ms.publish import publish_directory


@dataclass(frozen=True)
class PhaseshiftResult:
    outputvis: str
    fields: tuple[int, ...]
    seconds: float


def run_phaseshift(
    vis: str, outputvis: str, fields: tuple[int, ...], phasecenter: str, log_file: str | None = None
) -> PhaseshiftResult:
    """Shift ``fields`` of ``vis`` to ``phasecenter`` (e.g. ``J2000 128.7deg 55.6deg``).

    Only DATA is carried over (a model must be written after rephasing). The
    FIELD rows keep their ids; PHASE_DIR of the shifted fields changes,
    REFERENCE_DIR does not. Written to a temporary name, then renamed.
    """
    started = time.perf_counter()
    if log_file:
        casa_env.set_casa_logfile(log_file)
    tasks = casa_env.casatasks()
    with publish_directory(outputvis) as partial:
        with casa_env.casa_output_to_log():
            tasks.phaseshift(
                vis=str(vis),
                outputvis=str(partial),
                field=",".join(str(f) for f in fields),
                phasecenter={str(f): phasecenter for f in fields},
                datacolumn="data",
            )
        if not (partial / "table.dat").exists():
            raise RuntimeError(f"phaseshift wrote no MS for {vis} (see the CASA log)")
    return PhaseshiftResult(str(outputvis), tuple(fields), time.perf_counter() - started)
