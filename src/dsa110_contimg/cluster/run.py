"""One run on a Dask cluster: which cluster, its client, log directory, progress, report.

Every command that computes on the cluster (calibrate, apply, bench-spw,
reprocess, image, rephase) opens its client here, so the cluster options
mean the same everywhere and the performance report is set up once.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.cluster.client import dask_client
from dsa110_contimg.cluster.profiles import load_profile, open_profile_client, parse_cluster_options
from dsa110_contimg.errors import ContimgError


@dataclass(frozen=True)
class ClusterChoice:
    """An existing scheduler, or a profile (local, ssh, slurm, a YAML file) with overrides."""

    scheduler: str | None = None
    profile: str | None = None
    options: tuple[str, ...] = ()  # KEY=VALUE overrides of the profile
    n_workers: int | None = None

    def checked_profile(self) -> dict | None:
        """The profile with its overrides, checked; None for an existing scheduler."""
        if self.scheduler:
            if self.profile or self.options or self.n_workers:
                raise ContimgError(
                    "--scheduler uses a running cluster: --cluster, --cluster-option and "
                    "--n-workers do not apply to it"
                )
            return None
        overrides = parse_cluster_options(self.options)
        if self.n_workers:
            overrides["n_workers"] = self.n_workers
        return load_profile(self.profile or "local", overrides)


@dataclass(frozen=True)
class RunContext:
    client: object  # distributed.Client
    run_dir: Path  # the run's logs (CASA logs under run_dir/casa)
    progress: bool  # draw progress on the terminal


@contextlib.contextmanager
def open_run(
    cluster: ClusterChoice,
    run_dir,
    performance_report=None,
    progress: bool | None = None,
    announce: bool = True,
):
    """Yield a :class:`RunContext` on the chosen cluster; closed (and reported) on exit.

    ``performance_report`` names Dask's HTML report of everything computed
    inside; ``progress`` None draws progress only on a terminal;
    ``announce`` prints the dashboard address first.
    """
    profile = cluster.checked_profile()
    client_context = (
        dask_client(scheduler_address=cluster.scheduler)
        if profile is None
        else open_profile_client(profile)
    )
    with client_context as client:
        if announce:
            print(f"Dask dashboard: {client.dashboard_link}", flush=True)
        with _performance_report(performance_report):
            yield RunContext(
                client=client,
                run_dir=Path(run_dir).absolute(),
                progress=sys.stderr.isatty() if progress is None else progress,
            )


def _performance_report(path):
    if not path:
        return contextlib.nullcontext()
    from distributed import performance_report

    return performance_report(filename=str(path))


def show_progress(futures, progress: bool) -> None:
    """Dask's progress bar over ``futures`` on a terminal (returns when they finish)."""
    if progress:
        from distributed import progress as dask_progress

        dask_progress(list(futures))
