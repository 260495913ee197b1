"""CASA-style index selections: ``4~11``, ``0,2,5``, ``3``, ``0~3,8``."""

from __future__ import annotations

from dsa110_contimg.errors import ContimgError


def parse_index_selection(text: str, what: str, n_available: int | None = None) -> list[int]:
    """Sorted unique indices; ranges are inclusive. Refuses indices out of range."""
    indices: set[int] = set()
    try:
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            if "~" in part:
                lo, hi = (int(x) for x in part.split("~", 1))
                if hi < lo:
                    raise ValueError
                indices.update(range(lo, hi + 1))
            else:
                indices.add(int(part))
    except ValueError:
        raise ContimgError(
            f"cannot read {what} selection {text!r}: use e.g. 4~11 or 0,2,5"
        ) from None
    if not indices:
        raise ContimgError(f"empty {what} selection {text!r}")
    if min(indices) < 0 or (n_available is not None and max(indices) >= n_available):
        valid = f"0~{n_available - 1}" if n_available else "non-negative"
        raise ContimgError(f"{what} selection {text!r} is out of range: valid {what}s are {valid}")
    return sorted(indices)
