"""Create or connect to the Dask cluster that runs CASA tasks.

CASA and casacore are not thread-safe, so every worker is a process with one
thread. The dashboard binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os

from distributed.diagnostics.plugin import WorkerPlugin

from dsa110_contimg.errors import ContimgError

log = logging.getLogger(__name__)

# Environment for worker processes that run CASA. Dask runs tasks in a thread
# of the worker, so glibc gives CASA a secondary malloc arena made of 64 MiB
# heaps that are mapped and unmapped as tclean's large arrays come and go
# (measured: 3.8 million page faults for four images instead of 0.23 million,
# each image about 8 % slower). One arena keeps them in the main heap.
CASA_WORKER_ENVIRON = {"MALLOC_ARENA_MAX": "1"}

# Dask's background work in clusters started here. The statistical profiler
# samples the task thread every 10 ms, but a CASA task is one Python call into
# C++, so its profile shows nothing; with the default monitor intervals the
# idle driver and two workers took 10 % of a core (measured with psutil: 2 %
# with these settings), CPU that CASA tasks on a small node then lack.
CASA_CLUSTER_DASK_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "200ms",
    # One task at a time per single-thread worker: a CASA task takes seconds to
    # minutes, and a second one queued on a busy worker (the default 1.1 rounds
    # up to 2) can leave the other worker idle at the end of a run.
    "distributed.scheduler.worker-saturation": 1.0,
}

# How long a local cluster waits for a lost worker to come back before it
# closes that worker's nanny for good. Dask's 15 s suits batch jobs that vanish;
# here the nanny restarts a worker that CASA aborted (a disk filling up aborts
# casacore) within a second or two, but each removal arms its own 15 s timer,
# and one firing while a later restart is under way closed the nanny: the run
# then waited forever for a worker. The nanny alone decides when to give up.
LOCAL_LOST_WORKER_TIMEOUT = "30 days"


def casa_worker_exports() -> list[str]:
    """Shell lines giving a worker started elsewhere (a SLURM job) the same set-up.

    Dask reads ``DASK_SECTION__KEY`` environment variables as its config.
    """
    exports = [f"export {name}={value}" for name, value in CASA_WORKER_ENVIRON.items()]
    for key, value in CASA_CLUSTER_DASK_CONFIG.items():
        name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        exports.append(f"export {name}={value}")
    return exports


@contextlib.contextmanager
def casa_worker_environment():
    """Dask config under which nannies started here (or over SSH) spawn CASA workers.

    Workers get ``CASA_WORKER_ENVIRON`` and, like the scheduler, the quieter
    ``CASA_CLUSTER_DASK_CONFIG``. Nannies read
    ``distributed.nanny.pre-spawn-environ`` when they are created, so create
    the cluster inside this context.
    """
    import dask
    import distributed  # noqa: F401  (loads distributed's config defaults first)

    key = "distributed.nanny.pre-spawn-environ"
    environ = {f"{key}.{name}": value for name, value in CASA_WORKER_ENVIRON.items()}
    with dask.config.set({**environ, **CASA_CLUSTER_DASK_CONFIG}):
        yield


class QuietDaskLogging(WorkerPlugin):
    """Worker plugin: Dask's own log messages at ERROR and above only.

    A local worker's stderr is the user's terminal, which carries this
    project's lines only (an interrupted run would otherwise print every
    cancelled task). Workers a nanny restarts get it too.
    """

    def setup(self, worker):
        logging.getLogger("distributed").setLevel(logging.ERROR)
        # A heartbeat cut short by the cluster closing at the end of a run is
        # logged with a traceback; the run's own outcome is already reported.
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _workers_ignore_interrupts():
    """Worker processes started in this context ignore SIGINT.

    Ctrl-C reaches every process of the terminal's process group; the
    driver alone answers it and closes the cluster, instead of each worker
    printing its own traceback. Python leaves an inherited SIG_IGN in place.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_n_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )


@contextlib.contextmanager
def dask_client(
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    memory_limit: str = "auto",
    dashboard_address: str = "127.0.0.1:0",
    set_as_default: bool = True,
):
    """Yield a ``distributed.Client``; a LocalCluster is closed on exit.

    ``set_as_default=False`` leaves ``dask.compute`` of other code in this
    process on its own scheduler (work goes to the cluster only through the
    client's own calls).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler_address:
        try:
            client = Client(scheduler_address, timeout="20s", set_as_default=set_as_default)
        except OSError as err:
            raise ContimgError(f"cannot reach Dask scheduler {scheduler_address}: {err}") from err
        log.info("using Dask scheduler %s (dashboard %s)", scheduler_address, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    # read by the cluster's event loop whenever a worker is removed: set for its lifetime
    with dask.config.set({"distributed.deploy.lost-worker-timeout": LOCAL_LOST_WORKER_TIMEOUT}):
        with casa_worker_environment(), _workers_ignore_interrupts():
            cluster = LocalCluster(
                n_workers=n_workers or default_n_workers(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=dashboard_address,
                memory_limit=memory_limit,
            )
        client = Client(cluster, set_as_default=set_as_default)
        client.register_plugin(QuietDaskLogging(), name="contimg-quiet-dask-logging")
        log.info(
            "Dask LocalCluster: %d worker processes x 1 thread; dashboard %s",
            len(cluster.workers),
            client.dashboard_link,
        )
        try:
            yield client
        finally:
            client.close()
            cluster.close()
