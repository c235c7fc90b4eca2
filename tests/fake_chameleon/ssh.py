"""SSH-like TCP listeners standing in for nodes' sshd: accept, send a banner (or stay silent), close."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time

SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 FakeChameleon\r\n"


class SSHListeners:
    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._socks: dict[tuple[str, int], socket.socket] = {}
        self._lock = threading.Lock()
        self._silent: list[socket.socket] = []
        self._stop = threading.Event()
        self.mode = "banner"
        self._thread = threading.Thread(target=self._run, name="fake-ssh", daemon=True)
        self._thread.start()

    def open(self, addr: str, port: int):
        with self._lock:
            if (addr, port) in self._socks:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(16)
            s.setblocking(False)
            self._socks[(addr, port)] = s
            self._sel.register(s, selectors.EVENT_READ)

    def close(self, addr: str, port: int):
        with self._lock:
            s = self._socks.pop((addr, port), None)
            if s is not None:
                self._sel.unregister(s)
                s.close()

    def addresses(self):
        with self._lock:
            return sorted(self._socks)

    def _run(self):
        while not self._stop.is_set():
            with self._lock:
                empty = not self._socks
            if empty:
                time.sleep(0.05)
                continue
            for key, _ in self._sel.select(timeout=0.05):
                with contextlib.suppress(OSError):
                    conn, _ = key.fileobj.accept()
                    if self.mode == "silent":
                        # Keep the connection open without a banner, as a hung sshd would.
                        self._silent.append(conn)
                        continue
                    conn.sendall(SSH_BANNER)
                    conn.close()

    def set_mode(self, mode: str):
        self.mode = mode

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for s in list(self._socks.values()) + self._silent:
                s.close()
            self._socks.clear()
            self._silent.clear()
