"""What a calibration step did: its outcome, and the rules every step runs under.

A step whose inputs did not succeed is skipped, so a failure in one SPW
stops only that SPW's chain. Exceptions are retried ``retries`` times (CASA
can fail transiently on table locks); a step that still fails is recorded
with its message instead of raising, and the other SPWs complete. A
:class:`~dsa110_contimg.errors.StepFailed` (the data give no solutions) or a
:class:`~dsa110_contimg.errors.ContimgError` is deterministic and not retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import dask

from dsa110_contimg.calibration.plan import ObservationPlan
from dsa110_contimg.errors import ContimgError, StepFailed

log = logging.getLogger(__name__)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass(frozen=True)
class StepOutcome:
    ms: str
    spw: int  # -1 for steps over the whole MS
    step: str
    status: str
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    detail: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0  # of the worker process while the step ran (one thread each)
    peak_rss_gb: float = 0.0  # the worker process's peak resident memory so far

    @property
    def ok(self) -> bool:
        return self.status == OK


def run_step(step, obs: ObservationPlan, spw, upstream, body, retries: int) -> StepOutcome:
    """Run ``body()`` (returns a detail dict, or an outcome) unless an input failed."""
    blocked = [u for u in upstream if not u.ok]
    if blocked:
        first = blocked[0]
        reason = f"{first.step} {first.status}" + (f": {first.error}" if first.error else "")
        return StepOutcome(obs.ms, spw, step, SKIPPED, error=reason)
    from dsa110_contimg.casa_env import keep_large_allocations

    keep_large_allocations()  # once per process: large arrays reuse freed memory
    started, cpu_started = time.perf_counter(), time.process_time()
    error = None
    for attempt in range(1, retries + 2):
        try:
            # Steps run inside Dask workers: any dask work they do stays in this process.
            with dask.config.set(scheduler="synchronous"):
                result = body()
            if isinstance(result, StepOutcome):
                return result
            return StepOutcome(
                obs.ms, spw, step, OK, time.perf_counter() - started, attempt,
                detail=result or {}, cpu_seconds=time.process_time() - cpu_started,
                peak_rss_gb=_peak_rss_gb(),
            )  # fmt: skip
        except (StepFailed, ContimgError) as err:  # deterministic: a retry gives the same
            error = str(err)
            break
        except Exception as err:  # noqa: BLE001 - recorded, and the other SPWs go on
            error = f"{type(err).__name__}: {err}"
            log.warning("%s spw %s %s attempt %d failed: %s", obs.stem, spw, step, attempt, error)
    return StepOutcome(obs.ms, spw, step, FAILED, time.perf_counter() - started, attempt, error)


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
