"""Publish a directory product (an MS) only when it is complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def publish_directory(final: str | os.PathLike):
    """Yield a hidden partial path beside ``final``; rename it into place on success.

    An existing ``final`` is replaced only after the new product is complete;
    on any failure (or interruption) the partial directory is removed.
    """
    final = Path(final)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
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
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    try:
        partial.write_text(text)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final
