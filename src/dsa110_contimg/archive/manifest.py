"""The archive run's manifest: one SQLite file recording every MS and what became of it.

Table ``observations``, one row per input MS (key: its absolute path):
``role`` (calibrator or target), ``state`` (pending, running, done, failed),
``fingerprint`` (of the input's files: names, sizes, modification times),
``solutions_from`` (the calibrator MS a target took its tables from),
``outputs`` and ``caltables`` (JSON lists), ``started``/``finished`` (ISO
UTC), ``seconds``, ``qa_score``, ``qa_verdict``, ``error``. The driver is
the only writer; every change is one short transaction in WAL mode, so
readers (``contimg status``) never block it and a killed run leaves a
consistent file: whatever was ``running`` is redone on the next run.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from dsa110_contimg.errors import ContimgError

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES = (PENDING, RUNNING, DONE, FAILED)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    path TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    fingerprint TEXT,
    solutions_from TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    caltables TEXT NOT NULL DEFAULT '[]',
    started TEXT,
    finished TEXT,
    seconds REAL,
    qa_score REAL,
    qa_verdict TEXT,
    error TEXT,
    run_host TEXT,
    run_pid INTEGER,
    inputs TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# Columns added after the first schema; older manifests gain them on open.
_ADDED_COLUMNS = {"run_host": "TEXT", "run_pid": "INTEGER", "inputs": "TEXT"}
_SQLITE_HEADER = b"SQLite format 3\x00"
# A run that is no longer alive left these entries ``running``: shown as interrupted.
INTERRUPTED = "interrupted"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Manifest:
    """The manifest of one output directory (``<out>/manifest.sqlite``).

    With ``writable=False`` the file is only read (``status``, planning), and a
    directory without a manifest reads as an empty one: nothing is written to
    disk. An existing file that is not this manifest is never changed.
    """

    FILENAME = "manifest.sqlite"

    def __init__(self, out_dir, writable: bool = True):
        self.path = Path(out_dir) / self.FILENAME
        self._lock = threading.Lock()
        self.writable = writable
        _refuse_foreign_file(self.path)
        try:
            if not writable and (not self.path.exists() or self.path.stat().st_size == 0):
                self._db = sqlite3.connect(":memory:", check_same_thread=False)
                self._db.executescript(_SCHEMA)
            elif not writable:
                uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if tables and "observations" not in tables:
                raise sqlite3.DatabaseError("it has no observations table")
            if writable:
                self._upgrade()
        except sqlite3.DatabaseError as err:
            if hasattr(self, "_db"):
                self._db.close()
            raise _database_error(self.path, err) from None

    def _upgrade(self) -> None:
        """Create the tables, or add the columns newer runs record (writable only)."""
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            present = {r[1] for r in self._db.execute("PRAGMA table_info(observations)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE observations ADD COLUMN {column} {kind}")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self, sql: str, parameters) -> None:
        try:
            with self._lock, self._db:
                self._db.execute(sql, parameters)
        except sqlite3.DatabaseError as err:
            raise _database_error(self.path, err) from None

    def _read(self, sql: str, parameters=()) -> list:
        try:
            with self._lock:
                return self._db.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as err:
            raise _database_error(self.path, err) from None

    def get(self, path) -> dict | None:
        rows = self._read("SELECT * FROM observations WHERE path = ?", (str(path),))
        return _as_dict(rows[0], self.path) if rows else None

    def all(self) -> list[dict]:
        rows = self._read("SELECT * FROM observations ORDER BY path")
        return [_as_dict(r, self.path) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self._read("SELECT state, COUNT(*) FROM observations GROUP BY state"):
            counts[state] = n
        return counts

    def register(self, path, role: str, fingerprint: str, solutions_from=None) -> None:
        """Add an MS as pending, or set an existing one back to pending (its inputs changed)."""
        self._write(
            "INSERT INTO observations (path, role, state, fingerprint, solutions_from) "
            "VALUES (?, ?, 'pending', ?, ?) ON CONFLICT(path) DO UPDATE SET role = excluded.role, "
            "state = 'pending', fingerprint = excluded.fingerprint, "
            "solutions_from = excluded.solutions_from, error = NULL",
            (str(path), role, fingerprint, solutions_from),
        )

    def record_inputs(self, path, inputs: list[dict]) -> None:
        """The files an entry was made from, e.g. [{path, fingerprint}] of subband files."""
        self._write(
            "UPDATE observations SET inputs = ? WHERE path = ?", (json.dumps(inputs), str(path))
        )

    def mark_running(self, path) -> None:
        self._write(
            "UPDATE observations SET state = 'running', started = ?, error = NULL, "
            "run_host = ?, run_pid = ? WHERE path = ?",
            (_now(), socket.gethostname(), os.getpid(), str(path)),
        )

    def mark_done(self, path, outputs, caltables, seconds, qa_score=None, qa_verdict=None):
        self._write(
            "UPDATE observations SET state = 'done', finished = ?, outputs = ?, caltables = ?, "
            "seconds = ?, qa_score = ?, qa_verdict = ?, error = NULL WHERE path = ?",
            (_now(), json.dumps(list(outputs)), json.dumps(list(caltables)), seconds,
             qa_score, qa_verdict, str(path)),
        )  # fmt: skip

    def mark_failed(self, path, error: str, seconds=None) -> None:
        self._write(
            "UPDATE observations SET state = 'failed', finished = ?, error = ?, seconds = ? "
            "WHERE path = ?",
            (_now(), error, seconds, str(path)),
        )


def shown_state(record: dict) -> str:
    """The state to show: ``running`` entries of a run that is gone are ``interrupted``."""
    if record["state"] != RUNNING:
        return record["state"]
    if record.get("run_host") == socket.gethostname() and record.get("run_pid"):
        try:
            os.kill(int(record["run_pid"]), 0)
        except ProcessLookupError:
            return INTERRUPTED
        except PermissionError:
            return RUNNING
    return RUNNING


def _refuse_foreign_file(path: Path) -> None:
    """Refuse a manifest path holding something else, or an empty file among products."""
    if not path.exists():
        return
    if path.is_dir():
        raise ContimgError(f"{path} is a directory, not a manifest")
    size = path.stat().st_size
    if size == 0:
        siblings = [p for p in path.parent.iterdir() if not p.name.startswith(path.name)]
        if siblings:
            raise ContimgError(
                f"{path} is empty but {path.parent} holds products: the manifest was lost or "
                "truncated; it was left as it is (move the products or the file aside)"
            )
        return
    with open(path, "rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if header != _SQLITE_HEADER:
        raise ContimgError(
            f"{path} is not a manifest (not an SQLite database); it was left as it is: "
            "use another --out or move the file aside"
        )


def _database_error(path: Path, err: sqlite3.DatabaseError) -> Exception:
    """A disk-full or I/O failure as OSError (exit 1); a damaged file as ContimgError."""
    message = str(err)
    if "full" in message:
        return OSError(errno.ENOSPC, f"manifest not updated ({message})", str(path))
    if isinstance(err, sqlite3.OperationalError):
        return OSError(errno.EIO, f"manifest not updated ({message})", str(path))
    return ContimgError(
        f"{path} is damaged or not a manifest ({message}); it was left as it is: "
        "move it aside to start a new manifest"
    )


def _as_dict(row: sqlite3.Row, path: Path) -> dict:
    record = dict(row)
    try:
        record["outputs"] = json.loads(record["outputs"])
        record["caltables"] = json.loads(record["caltables"])
        record["inputs"] = json.loads(record["inputs"]) if record.get("inputs") else []
    except (TypeError, ValueError):
        raise ContimgError(
            f"{path} is damaged (entry {record.get('path')!r} holds invalid JSON); "
            "it was left as it is: move it aside to start a new manifest"
        ) from None
    return record
