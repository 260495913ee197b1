"""Output paths checked before any work: a run never fails at its end for a bad path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dsa110_contimg.errors import ContimgError


def check_output_dir(path, what: str) -> Path:
    """``path`` is (or can become) a directory this process can write; nothing is created.

    Raises ContimgError naming ``what`` (e.g. "--out") otherwise.
    """
    path = Path(path).absolute()
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ContimgError(f"{what} {path}: {existing} is not a directory")
    _probe_writable(existing, what, path)
    return path


def check_output_file(path, what: str) -> Path:
    """``path`` can be written as a file: its directory exists and takes files."""
    path = Path(path).absolute()
    if path.is_dir():
        raise ContimgError(f"{what} {path} is a directory, not a file")
    if not path.parent.is_dir():
        raise ContimgError(f"{what} {path}: directory {path.parent} does not exist")
    _probe_writable(path.parent, what, path)
    return path


def _probe_writable(directory: Path, what: str, path: Path) -> None:
    """Create and remove a file in ``directory`` (permissions alone miss read-only mounts)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".contimg-write-check-", dir=directory)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ContimgError(f"{what} {path} cannot be written ({reason} in {directory})") from None
    os.close(fd)
    os.unlink(probe)
