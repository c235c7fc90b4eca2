"""Waiting with visible progress: elapsed time, the current state and the timeout, one line per change."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from chi_scripts.errors import CloudError


def say(msg: str):
    print(msg, flush=True, file=sys.stdout)


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def wait_for(
    label: str,
    poll: Callable[[], tuple[bool, str, Any]],
    timeout: float,
    interval: float,
    heartbeat: float = 60.0,
) -> Any:
    """Call poll() every `interval` seconds until it reports done; raise CloudError after `timeout`.

    poll returns (done, state, result). A line is printed when the state changes, and at least every
    `heartbeat` seconds so a long bare-metal boot never looks hung.
    """
    start = time.monotonic()
    last_state, last_line = None, 0.0
    while True:
        done, state, result = poll()
        elapsed = time.monotonic() - start
        if state != last_state or elapsed - last_line >= heartbeat or done:
            say(f"  [{label}] {state} - {_fmt(elapsed)} elapsed, timeout {_fmt(timeout)}")
            last_state, last_line = state, elapsed
        if done:
            return result
        if elapsed + interval > timeout:
            raise CloudError(f"timed out after {_fmt(timeout)} waiting for {label} (last state: {state})")
        time.sleep(interval)
