"""Which subband files make one observation: names, time stamps, what is missing.

The correlator writes, per observation, ``<YYYY-MM-DDTHH:MM:SS>_sb00.hdf5``
.. ``_sb15.hdf5``, all named with the same first time stamp; sb00 holds the
highest frequencies. A UVH5 file not named so is an observation by itself.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.errors import ContimgError

N_SUBBANDS = 16
SUBBAND_NAME = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(?P<index>\d{2})\.hdf5$"
)
RAW_SUFFIXES = (".hdf5", ".uvh5", ".h5")


@dataclass(frozen=True)
class SubbandFile:
    path: str
    stamp: str  # the observation's time stamp, or the file's stem when not named so
    index: int  # subband number (0 = highest frequencies); 0 for a lone file


@dataclass(frozen=True)
class SubbandGroup:
    """The files of one observation, by subband number."""

    name: str  # time stamp (or a lone file's stem): the MS is <name>.ms
    files: tuple[SubbandFile, ...]
    expected: int  # subbands an observation has (16; 1 for a lone file)

    @property
    def missing(self) -> tuple[int, ...]:
        have = {f.index for f in self.files}
        return tuple(i for i in range(self.expected) if i not in have)

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe_missing(self) -> str:
        return ", ".join(f"sb{i:02d}" for i in self.missing)


def subband_file(path) -> SubbandFile:
    path = Path(path)
    match = SUBBAND_NAME.match(path.name)
    if match:
        return SubbandFile(str(path.absolute()), match["stamp"], int(match["index"]))
    return SubbandFile(str(path.absolute()), path.stem, 0)


def _is_raw(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RAW_SUFFIXES


def expand_raw_inputs(inputs) -> list[Path]:
    """Subband files from files, directories (their UVH5 files) and list files (a path a line)."""
    found: list[Path] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise ContimgError(f"{path} does not exist")
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if _is_raw(p))
        elif _is_raw(path):
            found.append(path)
        else:
            found += _listed(path)
    unique = sorted({p.absolute() for p in found})
    if not unique:
        raise ContimgError(f"no UVH5 subband files in {', '.join(map(str, inputs))}")
    return unique


def _listed(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        raise ContimgError(
            f"{path} is neither a UVH5 file (.hdf5, .uvh5) nor a text list of them"
        ) from None
    listed = [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    for p in listed:
        if not _is_raw(p):
            raise ContimgError(f"{path} lists {p}, which is not a UVH5 file")
    return listed


def _stamp_seconds(stamp: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def group_subbands(paths, tolerance_s: float = 0.0) -> list[SubbandGroup]:
    """Group files by time stamp (equal, or within ``tolerance_s`` of the group's first).

    Two files of one subband in one group are refused: the tolerance joins
    two observations, or a file is duplicated.
    """
    files = sorted((subband_file(p) for p in paths), key=lambda f: (f.stamp, f.index))
    groups: list[list[SubbandFile]] = []
    for f in files:
        last = groups[-1] if groups else None
        if last is not None and _same_observation(last[0], f, tolerance_s):
            last.append(f)
        else:
            groups.append([f])
    result = []
    for members in groups:
        named = SUBBAND_NAME.match(Path(members[0].path).name) is not None
        indices = [f.index for f in members]
        if len(set(indices)) != len(indices):
            twice = sorted({i for i in indices if indices.count(i) > 1})
            raise ContimgError(
                f"observation {members[0].stamp} has two files of subband(s) "
                f"{', '.join(f'sb{i:02d}' for i in twice)}: "
                + (f"--time-tolerance {tolerance_s:g} s joins two observations"
                   if tolerance_s else "a file is there twice")
            )  # fmt: skip
        result.append(SubbandGroup(members[0].stamp, tuple(members), N_SUBBANDS if named else 1))
    return result


def _same_observation(first: SubbandFile, other: SubbandFile, tolerance_s: float) -> bool:
    if first.stamp == other.stamp:
        return SUBBAND_NAME.match(Path(first.path).name) is not None
    if tolerance_s <= 0:
        return False
    a, b = _stamp_seconds(first.stamp), _stamp_seconds(other.stamp)
    return a is not None and b is not None and abs(b - a) <= tolerance_s
