"""Per-run log directory: the project's log and CASA's log, off the terminal."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from dsa110_contimg import casa_env

RUN_ROOT_ENV = "CONTIMG_RUN_ROOT"


def start_run_logging(command: str, log_dir: str | None = None, verbose: bool = False) -> Path:
    """Create the run's log directory and route logging there (CLI only).

    The directory is ``log_dir`` if given, else ``$CONTIMG_RUN_ROOT`` (default
    ``./contimg_runs``) / ``<UTC time>-<command>-<pid>``. It receives
    ``contimg.log`` (everything, DEBUG) and ``casa.log``; the terminal gets
    INFO lines from this project only.
    """
    if log_dir is None:
        root = Path(os.environ.get(RUN_ROOT_ENV, "contimg_runs"))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        log_dir = root / f"{stamp}-{command}-{os.getpid()}"
    run_dir = Path(log_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    casa_env.set_casa_logfile(run_dir / "casa.log")

    root_logger = logging.getLogger()
    root_logger.setLevel(logging.DEBUG)
    for handler in list(root_logger.handlers):
        root_logger.removeHandler(handler)
    file_handler = logging.FileHandler(run_dir / "contimg.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.setLevel(logging.DEBUG)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.addFilter(logging.Filter("dsa110_contimg"))
    root_logger.addHandler(file_handler)
    root_logger.addHandler(console)
    for noisy in ("distributed", "bokeh", "tornado", "asyncio", "matplotlib", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_dir
