"""Serve every *.prom file of a directory on /metrics, like the node exporter's textfile collector.

The local backend has no node exporter; this lets its Prometheus scrape the rollout state and
chi_scripts' `chiops_lease_end_timestamp_seconds` from files, the same way a Chameleon node exports them.
"""

from __future__ import annotations

import argparse
import http.server
import sys
from pathlib import Path


def collect(directory: Path) -> bytes:
    parts = []
    for path in sorted(directory.glob("*.prom")):
        try:
            text = path.read_text()
        except OSError:
            continue  # removed between glob and read
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts).encode()


def serve(directory: Path, host: str, port: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            body = collect(directory)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # one line per scrape would drown the log

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m monitoring.textfile_exporter", description=__doc__.splitlines()[0]
    )
    p.add_argument("--dir", required=True, help="directory of *.prom files")
    p.add_argument("--listen", default="127.0.0.1:9392", help="HOST:PORT")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    serve(Path(a.dir), host, int(port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
