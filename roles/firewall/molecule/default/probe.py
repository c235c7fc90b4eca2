#!/usr/bin/env python3
"""Try a TCP connection to each port of a host; print {port: open|refused|timeout} as JSON."""

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def probe(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"


host, ports = sys.argv[1], sys.argv[2:]
with ThreadPoolExecutor(max_workers=len(ports)) as pool:
    results = dict(zip(ports, pool.map(lambda p: probe(host, p), ports), strict=True))
print(json.dumps(results, sort_keys=True))
