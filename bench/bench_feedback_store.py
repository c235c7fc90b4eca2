"""The SQLite feedback store under several writers: a connection per call against serving.feedback_store.

Several processes (the replicas of a node) each write feedback as fast as they can into one database, once
with a connection opened and closed around every INSERT (what serving.feedback_store did before it kept one
connection per thread; closing the last connection of a WAL database checkpoints it and removes the WAL
file, so nearly every call paid for a checkpoint and an fsync of the database) and once through SQLiteStore
itself. Prints per-write latency and the ratio; the store's timeout (2 s) is what turns a slow write into a
/feedback 503.

    PYTHONPATH=. python bench/bench_feedback_store.py [--writers 4] [--writes 200]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from serving.feedback_store import COLUMNS, DEFAULT_TIMEOUT_S, SCHEMA, Feedback, open_store

INSERT = (
    f"INSERT INTO feedback ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT(prediction_id) DO NOTHING"
)


def _record(writer: int, i: int) -> Feedback:
    return Feedback(f"w{writer}-{i}", bytes(256), 3, 3, "production", "v1", time.time(), time.time())


def _per_call(path: str, writer: int, writes: int, out) -> None:
    latencies, failures = [], 0
    for i in range(writes):
        fb, start = _record(writer, i), time.perf_counter()
        try:
            conn = sqlite3.connect(path, timeout=DEFAULT_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute(INSERT, [getattr(fb, c) for c in COLUMNS])
            finally:
                conn.close()
        except sqlite3.Error:
            failures += 1
        latencies.append(time.perf_counter() - start)
    out.put((latencies, failures))


def _store(path: str, writer: int, writes: int, out) -> None:
    store, latencies, failures = open_store(f"sqlite:///{path}"), [], 0
    for i in range(writes):
        fb, start = _record(writer, i), time.perf_counter()
        try:
            store.add(fb)
        except Exception:  # StoreUnavailable: counted, as /feedback would answer 503
            failures += 1
        latencies.append(time.perf_counter() - start)
    out.put((latencies, failures))


def run(target, writers: int, writes: int) -> tuple[list[float], int, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "feedback.db")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA.format(blob="BLOB"))
        conn.close()
        out = mp.Queue()
        procs = [mp.Process(target=target, args=(path, w, writes, out)) for w in range(writers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        rows = sqlite3.connect(path).execute("SELECT count(*) FROM feedback").fetchone()[0]
    latencies = [x for lat, _ in results for x in lat]
    failures = sum(f for _, f in results)
    if rows + failures != writers * writes:
        raise SystemExit(f"{target.__name__}: {rows} rows + {failures} failures != {writers * writes} writes")
    return latencies, failures, elapsed


def _summary(latencies: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1000, q[98] * 1000, max(latencies) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args(argv)
    rows = {}
    for name, target in (("connection per call", _per_call), ("SQLiteStore", _store)):
        latencies, failures, elapsed = run(target, args.writers, args.writes)
        rows[name] = (*_summary(latencies), failures, len(latencies) / elapsed)
    print(f"{args.writers} writers x {args.writes} writes into one SQLite database (WAL)")
    print(f"{'':22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7} {'writes/s':>9}")
    for name, (p50, p99, worst, failures, rate) in rows.items():
        print(f"{name:22} {p50:8.2f} {p99:8.2f} {worst:8.1f} {failures:7d} {rate:9.0f}")
    base, new = rows["connection per call"], rows["SQLiteStore"]
    print(f"SQLiteStore / per call: p99 {new[1] / base[1]:.2f}x, throughput {new[4] / base[4]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
