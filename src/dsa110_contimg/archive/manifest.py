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
import json
import sqlite3
import threading
from pathlib import Path

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
    error TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Manifest:
    """The manifest of one output directory (``<out>/manifest.sqlite``)."""

    FILENAME = "manifest.sqlite"

    def __init__(self, out_dir):
        self.path = Path(out_dir) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
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
        with self._lock, self._db:
            self._db.execute(sql, parameters)

    def get(self, path) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM observations WHERE path = ?", (str(path),)
            ).fetchone()
        return None if row is None else _as_dict(row)

    def all(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM observations ORDER BY path").fetchall()
        return [_as_dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._lock:
            for state, n in self._db.execute(
                "SELECT state, COUNT(*) FROM observations GROUP BY state"
            ):
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

    def mark_running(self, path) -> None:
        self._write(
            "UPDATE observations SET state = 'running', started = ?, error = NULL WHERE path = ?",
            (_now(), str(path)),
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


def _as_dict(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["outputs"] = json.loads(record["outputs"])
    record["caltables"] = json.loads(record["caltables"])
    return record
