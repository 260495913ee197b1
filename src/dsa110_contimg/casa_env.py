"""Offline CASA and astropy, configured before casatools is first imported.

casatools reads its configuration once, at import, from the file named by
``CASASITECONFIG`` (then ``~/.casa/config.py``). This module writes a site
config that points ``measurespath`` at the data shipped by the ``casadata``
package, turns every auto-update off and keeps the CASA log off the terminal.
A user who already set ``CASASITECONFIG`` keeps their own file.

The CASA log file is chosen at run time: the config reads
``CONTIMG_CASA_LOGFILE`` (set by :func:`set_casa_logfile`, inherited by
worker processes) and falls back to one file per process under
``~/.cache/dsa110_contimg/logs``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sys
from pathlib import Path

CASA_LOGFILE_ENV = "CONTIMG_CASA_LOGFILE"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsa110_contimg"

_SITE_CONFIG_TEMPLATE = """\
# Written by dsa110_contimg.casa_env: offline CASA with the casadata package.
import os as _os
measurespath = {datapath!r}
datapath = [{datapath!r}]
measures_auto_update = False
data_auto_update = False
skipnetworkcheck = True
nologger = True
nogui = True
log2term = False
agg = True
casaconfig_verbose = 0
logfile = _os.environ.get({env!r}) or _os.path.join(
    {log_root!r}, "casa-%d.log" % _os.getpid()
)
"""


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def configure_casa() -> None:
    """Point casatools at the casadata measures, no network, no terminal log.

    Must run before ``import casatools``; afterwards it is a no-op because
    casatools has already read its configuration.
    """
    if "CASASITECONFIG" in os.environ or "casatools" in sys.modules:
        return
    import casadata

    log_root = CACHE_DIR / "logs"
    log_root.mkdir(parents=True, exist_ok=True)
    text = _SITE_CONFIG_TEMPLATE.format(
        datapath=str(Path(casadata.datapath).resolve()),
        env=CASA_LOGFILE_ENV,
        log_root=str(log_root),
    )
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    config_path = CACHE_DIR / f"casasiteconfig-{digest}.py"
    _write_if_changed(config_path, text)
    os.environ["CASASITECONFIG"] = str(config_path)
    if "CASARCFILES" not in os.environ:
        # python-casacore has its own measures lookup (aipsrc); give it the same data.
        casarc_path = CACHE_DIR / f"casarc-{digest}"
        _write_if_changed(casarc_path, f"measures.directory: {Path(casadata.datapath).resolve()}\n")
        os.environ["CASARCFILES"] = str(casarc_path)


def configure_astropy() -> None:
    """Use the IERS tables shipped in ``astropy-iers-data``; never download."""
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"


def offline_observatory_sites() -> None:
    """No download of astropy's observatory list (pyuvdata asks for it).

    The list holds DSA-110 only; pyuvdata then knows other telescopes from
    its own list, and a file that gives its telescope's location needs none.
    """
    from astropy import units as u
    from astropy.coordinates import EarthLocation
    from astropy.coordinates.sites import SiteRegistry

    from dsa110_contimg import instrument

    if not EarthLocation._site_registry:
        registry = SiteRegistry()
        registry.add_site(
            ["DSA-110", "dsa110"],
            EarthLocation.from_geodetic(
                instrument.SITE_LONGITUDE_DEG * u.deg,
                instrument.SITE_LATITUDE_DEG * u.deg,
                instrument.SITE_HEIGHT_M * u.m,
            ),
        )
        EarthLocation._site_registry = registry


def set_casa_logfile(path: str | os.PathLike) -> None:
    """Send the CASA log of this process (and of processes it starts) to ``path``."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ[CASA_LOGFILE_ENV] = str(path)
    # casatasks logs through its own sink object: switch that one too.
    for module_name in ("casatools", "casatasks"):
        module = sys.modules.get(module_name)
        sink = getattr(module, "casalog", None)
        if sink is None and module_name == "casatools" and module is not None:
            sink = module.logsink()
        if sink is not None:
            sink.setlogfile(str(path))


@contextlib.contextmanager
def casa_output_to_log():
    """Send what CASA's C++ layer writes to the terminal into the CASA log file.

    casacore echoes WARN and SEVERE messages to stderr whatever the log sink
    settings; inside this context file descriptors 1 and 2 point at the log.
    """
    logfile = _current_casa_logfile()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(logfile, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _current_casa_logfile() -> Path:
    explicit = os.environ.get(CASA_LOGFILE_ENV)
    if explicit:
        return Path(explicit)
    return CACHE_DIR / "logs" / f"casa-{os.getpid()}.log"


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024**2  # glibc's own ceiling for the dynamic threshold
_TRIM_THRESHOLD_BYTES = 256 * 1024**2


@functools.cache
def keep_large_allocations() -> bool:
    """Let glibc reuse freed memory for CASA's large, short-lived arrays.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
    also freezes glibc's mmap threshold at 128 KiB: every larger array CASA
    allocates is then a fresh ``mmap`` (zeroed pages, page faults) and every
    free an ``munmap``. tclean in such a worker takes about 1.35x its time in
    a plain process. Setting the thresholds to glibc's dynamic ceiling here
    restores plain-process speed in any worker, however it was started.
    Returns whether the allocator was tuned (False off glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
            and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
        )
    except (OSError, AttributeError):
        return False


@functools.cache
def casatools():
    """Import casatools configured for offline use, its log kept off the terminal.

    Done once per process: re-running the measures warm-up after CASA tasks
    have run crashes casacore. The import runs in a thread of its own, moved
    into a network namespace of its own where the system allows it
    (:func:`_private_network_thread`), so the service registry casatools
    starts inside the import listens where nothing can reach it.
    """
    configure_casa()
    keep_large_allocations()
    listening_before = _listening_sockets()
    module = _private_network_thread(_import_casatools)
    _close_wildcard_listeners(listening_before)  # where no namespace could be made
    return module


def _import_casatools():
    with casa_output_to_log():
        import casatools as module

        sink = module.logsink()
        sink.setglobal(True)
        sink.showconsole(False)
        # The first UTC conversion may warn about the leap-second table's age;
        # let that land in the log rather than on every user's terminal.
        measures = module.measures()
        measures.measure(measures.epoch("UTC", "today"), "TAI")
        measures.done()
    return module


_CLONE_NEWNET = 0x40000000


def _private_network_thread(work):
    """``work()`` run in a new thread that first leaves for a network namespace of its own.

    casatools starts a gRPC registry for CASA's GUI viewers in the constructor
    of its first tool, bound to 0.0.0.0 at a random port, with no setting to
    bind it to loopback or leave it off. A network namespace is per thread on
    Linux: this thread's new one has only a loopback that is down, so sockets
    made in it (and in the threads it starts, gRPC's own) are reachable from
    nowhere and are not in the process's table of connections, while every
    other thread of the process stays on the host's network. Without the
    privilege to make a namespace (``unshare`` refused) the work runs on the
    host's network and the caller closes what it left listening.
    """
    import ctypes
    import threading

    outcome = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            outcome["private"] = libc.unshare(_CLONE_NEWNET) == 0
        except (OSError, AttributeError):
            outcome["private"] = False
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="casatools-import")
    thread.start()
    thread.join()
    logging.getLogger(__name__).debug(
        "casatools imported %s", "in a private network namespace" if outcome["private"]
        else "on the host's network (no namespace allowed)"
    )  # fmt: skip
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """{fd: (address, port)} of this process's listening TCP sockets."""
    import psutil

    return {
        c.fd: (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.fd >= 0
    }


def _close_wildcard_listeners(before: dict[int, tuple[str, int]]) -> None:
    """Take down the service registry casatools opened on every interface.

    Needed only where the import could not run in a private network
    namespace. Stopping the registry with ``ctsys.shutdown`` breaks later
    tasks, so its socket's descriptor is replaced by a fresh socket that
    listens nowhere: the registry never hears from anyone, and every task,
    table and measure works as before.
    """
    import socket

    for fd, (address, port) in _listening_sockets().items():
        if fd in before or address in ("127.0.0.1", "::1"):
            continue
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as replacement:
            os.dup2(replacement.fileno(), fd)
        logging.getLogger(__name__).debug(
            "closed casatools' registry listener on %s:%d (fd %d)", address, port, fd
        )


@functools.cache
def casatasks():
    """Import casatasks after :func:`casatools` has configured CASA."""
    casatools()
    with casa_output_to_log():
        import casatasks as module
    return module
