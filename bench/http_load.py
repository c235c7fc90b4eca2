"""Minimal HTTP/1.1 keep-alive load client for the serving bench (run as its own process).

A hand-rolled asyncio client costs ~10x less CPU per request than httpx, so on a 2-core machine the client
takes less from the servers it measures (it still takes some: the bench reports ratios measured under the same
client). Closed loop (``--concurrency``: that many connections, each sends its next request when the last one
answered) or open loop (``--rate``: requests start on a fixed schedule, up to ``--max-inflight`` at once).

    python bench/http_load.py --url http://127.0.0.1:8000/production/predict --bodies bodies.json \
        --concurrency 32 --duration 10
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _request(reader, writer, head: bytes, body: bytes) -> int:
    writer.write(head + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


class Client:
    def __init__(self, url: str, bodies: list[bytes]):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.heads = [
            (
                f"POST {parts.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
            ).encode()
            for b in bodies
        ]
        self.bodies = bodies
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0

    async def _connect(self):
        return await asyncio.open_connection(self.host, self.port)

    def _record(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(latency)

    async def closed_worker(self, i: int, stop_at: float) -> None:
        conn = None
        n = i
        while time.perf_counter() < stop_at:
            k = n % len(self.bodies)
            n += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = await self._connect()
                status = await _request(*conn, self.heads[k], self.bodies[k])
                self._record(status, time.perf_counter() - t0)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                self.errors += 1
                if conn:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.05)
        if conn:
            conn[1].close()

    async def closed_loop(self, concurrency: int, duration: float) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(self.closed_worker(i, started + duration) for i in range(concurrency)))
        return time.perf_counter() - started

    async def open_loop(self, rate: float, duration: float, max_inflight: int) -> float:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(max_inflight):
            pool.put_nowait(None)
        started = time.perf_counter()
        tasks = set()

        async def one(k: int, scheduled: float):
            conn = await pool.get()
            try:
                if conn is None:
                    conn = await self._connect()
                status = await _request(*conn, self.heads[k], self.bodies[k])
                # latency from the scheduled start: queueing in the client counts (no coordinated omission)
                self._record(status, time.perf_counter() - scheduled)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                self.errors += 1
                if conn:
                    conn[1].close()
                conn = None
            finally:
                pool.put_nowait(conn)

        n = 0
        while True:
            due = started + n / rate
            if due - started >= duration:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n % len(self.bodies), due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        return time.perf_counter() - started

    def summary(self, elapsed: float) -> dict:
        lat = sorted(self.latencies)

        def pct(q):
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None

        ok = self.statuses.get(200, 0)
        return {
            "ok": ok,
            "non_200": sum(n for s, n in self.statuses.items() if s != 200),
            "errors": self.errors,
            "rps": round(ok / elapsed, 1),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "elapsed_s": round(elapsed, 2),
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--bodies", required=True, help="JSON file: a list of request bodies (strings)")
    p.add_argument("--duration", type=float, default=10.0)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--concurrency", type=int)
    mode.add_argument("--rate", type=float)
    p.add_argument("--max-inflight", type=int, default=64)
    a = p.parse_args(argv)
    host = urlsplit(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("http_load: loopback targets only", file=sys.stderr)
        return 2
    with open(a.bodies) as fh:
        bodies = [b.encode() for b in json.load(fh)]
    client = Client(a.url, bodies)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if a.concurrency:
        elapsed = asyncio.run(client.closed_loop(a.concurrency, a.duration))
    else:
        elapsed = asyncio.run(client.open_loop(a.rate, a.duration, a.max_inflight))
    print(json.dumps(client.summary(elapsed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
