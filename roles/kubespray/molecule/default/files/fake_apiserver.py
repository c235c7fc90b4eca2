"""A stand-in for a Kubernetes API server's unauthenticated /version endpoint, over HTTPS on 127.0.0.1.

Usage: fake_apiserver.py CERT KEY GIT_VERSION PORT_FILE LIFETIME_SECONDS
Binds a free port, writes it to PORT_FILE, answers GET /version, and exits after LIFETIME_SECONDS even if
nobody stops it (the scenario's cleanup kills it earlier).
"""

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    cert, key, git_version, port_file, lifetime = sys.argv[1:6]
    major, minor = git_version.lstrip("v").split(".")[:2]
    body = json.dumps({"major": major, "minor": minor, "gitVersion": git_version}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/version":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write("fake-apiserver: " + (format % args) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(port_file, "w") as handle:
        handle.write(str(server.server_address[1]))
    threading.Timer(float(lifetime), server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
