#!/usr/bin/env python3
"""Listen on the given TCP ports until killed (the kernel completes handshakes without accept())."""

import socket
import sys
import time

sockets = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(128)
    sockets.append(s)
while True:
    time.sleep(3600)
