"""The feedback store: every accepted /feedback, with the image that was predicted, kept in a database.

One table, the prediction id its primary key, so a replayed id is stored once and ``add`` tells the handler
whether it was new (only then is it counted in the online-accuracy metric). Each ``add`` is a single INSERT in
its own transaction: it is stored whole or not at all. Every call is bounded by ``timeout_s``; a store that is
down or slow raises StoreUnavailable, which /feedback answers with 503 (/predict never touches the store).

    sqlite:///abs/path/feedback.db       embedded default, one node (several processes may write)
    postgresql://user@host:5432/chiops   several replicas; the password comes from libpq's environment
                                         (PGPASSWORD / PGPASSFILE), never from the URL, which lands in configs

Torch-free; psycopg is imported only for a PostgreSQL URL.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

STORE_ENV = "CHIOPS_FEEDBACK_STORE"
TIMEOUT_ENV = "CHIOPS_FEEDBACK_STORE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 2.0
IMAGE_SHAPE = (8, 8)
IMAGE_DTYPE = "<f4"  # what the model saw: /predict parses images to float32

COLUMNS = (
    "prediction_id",
    "image",
    "predicted_class",
    "label",
    "environment",
    "model_version",
    "predicted_at",
    "received_at",
)
SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY,
    image {blob} NOT NULL,
    predicted_class INTEGER NOT NULL,
    label INTEGER NOT NULL,
    environment TEXT NOT NULL,
    model_version TEXT NOT NULL,
    predicted_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
)"""


class StoreUnavailable(RuntimeError):
    """The store could not be reached or did not answer within its timeout; nothing was written."""


@dataclass(frozen=True)
class Feedback:
    prediction_id: str
    image: bytes  # 64 little-endian float32 pixels, row-major 8x8
    predicted_class: int
    label: int
    environment: str
    model_version: str
    predicted_at: float
    received_at: float

    def pixels(self) -> np.ndarray:
        return np.frombuffer(self.image, dtype=IMAGE_DTYPE).reshape(IMAGE_SHAPE)


def image_bytes(image) -> bytes:
    """The stored (and signed, see serving/tokens.py) form of one 8x8 image."""
    arr = np.ascontiguousarray(image, dtype=IMAGE_DTYPE)
    if arr.shape != IMAGE_SHAPE:
        raise ValueError(f"an image must be 8x8, got shape {arr.shape}")
    return arr.tobytes()


def image_digest(image) -> str:
    return hashlib.sha256(image_bytes(image)).hexdigest()[:24]


class SQLiteStore:
    """One connection per thread, kept open: closing the last connection of a WAL database checkpoints it
    and deletes the WAL file, which a connection per call paid on nearly every write
    (bench/bench_feedback_store.py).
    Safe across threads and processes; SQLite's lock serialises the writers. Every call first checks that the
    database file is still the one the connection holds, so a store whose file or volume is gone raises
    StoreUnavailable instead of writing into an unlinked inode."""

    def __init__(self, path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.path, self.timeout_s = Path(path), timeout_s
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"sqlite:///{self.path}"

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _connect(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is not None:
            conn, file_id = held
            if self._file_id() == file_id:
                return conn
            conn.close()
            self._local.held = None
        if not self.path.parent.is_dir():
            raise StoreUnavailable(f"feedback store {self}: directory {self.path.parent} does not exist")
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA.format(blob="BLOB"))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"feedback store {self}: {exc}") from exc
        self._local.held = (conn, self._file_id())
        return conn

    def _drop(self) -> None:
        # after an error the connection may be mid-transaction or on a dead file: the next call opens anew
        held = getattr(self._local, "held", None)
        if held is not None:
            held[0].close()
            self._local.held = None

    def add(self, fb: Feedback) -> bool:
        conn = self._connect()
        try:
            cur = conn.execute(
                f"INSERT INTO feedback ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
                " ON CONFLICT(prediction_id) DO NOTHING",
                [getattr(fb, c) for c in COLUMNS],
            )
            return cur.rowcount == 1
        except sqlite3.Error as exc:
            self._drop()
            raise StoreUnavailable(f"feedback store {self}: {exc}") from exc

    def records(self) -> list[Feedback]:
        conn = self._connect()
        try:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY prediction_id"
            ).fetchall()
        except sqlite3.Error as exc:
            self._drop()
            raise StoreUnavailable(f"feedback store {self}: {exc}") from exc
        return [_feedback(row) for row in rows]


class PostgresStore:
    """One connection per store object (psycopg serialises its use across threads), reopened after a
    failure."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url, self.timeout_s = url, timeout_s
        self._conn = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return self.url

    def _connection(self):
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.timeout_s)),
            # a statement (or a lock wait) longer than the timeout is cancelled by the server
            options=f"-c statement_timeout={int(self.timeout_s * 1000)}",
        )
        with conn.transaction():
            # two replicas creating the table at once would race on the catalog; the lock orders them
            conn.execute("SELECT pg_advisory_xact_lock(7413)")
            conn.execute(SCHEMA.format(blob="BYTEA"))
        self._conn = conn
        return conn

    def _run(self, sql: str, params=()):
        import psycopg

        with self._lock:
            try:
                cur = self._connection().execute(sql, params)
                return cur.rowcount, (cur.fetchall() if cur.description else [])
            except psycopg.Error as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise StoreUnavailable(f"feedback store {self}: {type(exc).__name__}: {exc}") from exc

    def add(self, fb: Feedback) -> bool:
        rowcount, _ = self._run(
            f"INSERT INTO feedback ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
            " ON CONFLICT (prediction_id) DO NOTHING",
            [getattr(fb, c) for c in COLUMNS],
        )
        return rowcount == 1

    def records(self) -> list[Feedback]:
        _, rows = self._run(f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY prediction_id")
        return [_feedback(row) for row in rows]


def _feedback(row) -> Feedback:
    pid, image, cls, label, env, version, predicted_at, received_at = row
    return Feedback(str(pid), bytes(image), int(cls), int(label), env, version, predicted_at, received_at)


# Environments whose feedback is live traffic. Staging only ever sees the rollout's own checks, which send the
# candidate's test images: kept as training data they would be leakage (and the same test images again).
LIVE_ENVIRONMENTS = ("production", "canary")


def live_records(store) -> list[Feedback]:
    """The store's records from live traffic: the only ones that become data or count as new labels."""
    return [r for r in store.records() if r.environment in LIVE_ENVIRONMENTS]


def open_store(url: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> SQLiteStore | PostgresStore | None:
    """The store a URL names (None or "" → no store). Connects lazily: a replica starts while the store is
    down."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not parts.path.startswith("/"):
            raise ValueError(f"feedback store {url!r}: use an absolute path, sqlite:///abs/path.db")
        return SQLiteStore(parts.path, timeout_s)
    if parts.scheme in ("postgresql", "postgres"):
        if parts.password:
            raise ValueError(
                "feedback store URL must not carry a password (it ends up in configs and logs); "
                "give it to the replicas as PGPASSWORD or PGPASSFILE"
            )
        return PostgresStore(url, timeout_s)
    raise ValueError(f"feedback store {url!r}: expected sqlite:///path or postgresql://user@host/db")


def store_from_env(environ=None):
    """The store named by $CHIOPS_FEEDBACK_STORE (serving/config.py sets it for the replicas), or None."""
    environ = os.environ if environ is None else environ
    return open_store(environ.get(STORE_ENV), float(environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def new_feedback(prediction, token: str, label: int, image, now: float | None = None) -> Feedback:
    """The record of one accepted feedback (``prediction`` is the verified serving.tokens.Prediction)."""
    return Feedback(
        prediction_id=token,
        image=image_bytes(image),
        predicted_class=prediction.predicted_class,
        label=int(label),
        environment=prediction.environment,
        model_version=prediction.model_version,
        predicted_at=prediction.issued_at,
        received_at=time.time() if now is None else now,
    )
