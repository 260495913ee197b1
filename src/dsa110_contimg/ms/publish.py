"""Publish a product (an MS, an image set, a report) only when it is complete.

Products are built under a hidden name beside the final one,
``.<name>.partial-<host>-<pid>``, and renamed into place. A writer that is
killed (out of memory, a signal) cannot clean up; the next writer of the
same product on the same host removes what it left.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
from pathlib import Path


def _partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{socket.gethostname()}-{os.getpid()}")


def remove_stale_partials(final: str | os.PathLike) -> None:
    """Remove partial copies of ``final`` left by writers on this host that are gone."""
    final = Path(final)
    prefix = f".{final.name}.partial-{socket.gethostname()}-"
    for leftover in final.parent.glob(glob.escape(prefix) + "*"):
        pid = leftover.name[len(prefix) :]
        if pid.isdigit() and not _process_alive(int(pid)):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def publish_directory(final: str | os.PathLike):
    """Yield a hidden partial path beside ``final``; rename it into place on success.

    An existing ``final`` is replaced only after the new product is complete;
    on any failure (or interruption) the partial directory is removed.
    """
    final = Path(final)
    remove_stale_partials(final)
    partial = _partial_path(final)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
        if final.exists():
            trash = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, trash)
            shutil.rmtree(trash)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def publish_file(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a hidden partial file beside ``final``, then rename it into place."""
    final = Path(final)
    remove_stale_partials(final)
    partial = _partial_path(final)
    try:
        partial.write_text(text)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final


PROVENANCE_FILE = ".contimg_input.json"


def write_provenance(product, input_ms) -> None:
    """Record inside ``product`` which input it was made from (checked before overwriting)."""
    (Path(product) / PROVENANCE_FILE).write_text(json.dumps({"input": str(input_ms)}))


def product_input(product) -> str | None:
    """The input ``product`` was made from, or None when it does not say."""
    try:
        return json.loads((Path(product) / PROVENANCE_FILE).read_text())["input"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
