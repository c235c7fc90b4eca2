"""Waiting for SSH: a TCP connect, then the server's banner (an open port alone can be a half-booted node)."""

from __future__ import annotations

import socket

from chi_scripts.progress import wait_for


def probe(addr: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    try:
        sock = socket.create_connection((addr, port), timeout=timeout)
    except OSError as e:
        return False, "connect timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
    data = b""
    with sock:
        sock.settimeout(timeout)
        try:
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if data.startswith(b"SSH-"):
        return True, data.split(b"\r\n")[0].decode(errors="replace").strip()
    return False, "connected, no SSH banner"


def wait_ssh(targets: dict[str, str], port: int, timeout: float, interval: float) -> dict[str, str]:
    """targets: host name -> address. Returns host -> banner once every host answers."""
    answered: dict[str, str] = {}
    reasons: dict[str, str] = {}

    def poll():
        for host, addr in targets.items():
            if host in answered:
                continue
            ok, detail = probe(addr, port, timeout=min(5.0, max(0.5, interval)))
            if ok:
                answered[host] = detail
            else:
                reasons[host] = f"{addr}:{port} {detail}"
        waiting = [reasons[h] for h in targets if h not in answered]
        state = f"{len(answered)}/{len(targets)} answer SSH" + (
            f" (waiting: {'; '.join(waiting)})" if waiting else ""
        )
        return not waiting, state, answered

    return wait_for("SSH", poll, timeout, interval)
