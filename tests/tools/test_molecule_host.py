"""tools/molecule-host.sh cannot lie: an interrupted image build is never reported ready (real podman)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "molecule-host.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("podman") is None or os.geteuid() != 0, reason="needs root and podman (make molecule-host)"
)


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag]).returncode == 0


def wait_for_child(pid: int, word: str) -> psutil.Process:
    deadline = 600  # polls, not a time limit on the product
    for _ in range(deadline):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name() == "podman" and word in child.cmdline():
                    return child
        psutil.wait_procs([], timeout=0.1)
    pytest.fail(f"no podman {word} under molecule-host.sh")


@pytest.mark.parametrize("target", ["group", "build", "script"])
def test_sigterm_during_the_systemd_image_build_is_not_ready(target):
    """`group`: a cancelled job or Ctrl-C (the whole process group); `build`: only podman build is stopped;
    `script`: only the script is, so the build (from cached layers) ends and tags the image before the
    script's trap runs, and the trap must remove it."""
    # The shared images first (cached after one run): the build under test then starts at once.
    subprocess.run([str(SCRIPT)], check=True, capture_output=True, timeout=900)
    tag = f"localhost/chiops-test-interrupted-{uuid.uuid4().hex[:8]}:bookworm"
    env = {**os.environ, "CHIOPS_SYSTEMD_IMAGE": tag}
    # Without podman's layer cache the build really runs apt-get, so a signal to podman lands mid-build: from
    # cached layers it could tag the image before the signal arrived (seen in CI).
    if target != "script":
        env["BUILDAH_LAYERS"] = "false"
    proc = subprocess.Popen(
        [str(SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith(f"[molecule-host] building {tag}"):
                break
        else:
            pytest.fail("molecule-host.sh never started the build")
        if target == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        elif target == "script":
            proc.send_signal(signal.SIGTERM)
        else:
            build = wait_for_child(proc.pid, "build")
            build.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0
        assert "ready" not in out
        assert not image_exists(tag)
        if target in ("group", "script"):
            assert f"interrupted while building {tag}" in err, err
        else:
            assert tag in err and ("build of" in err or "does not exist" in err), err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["podman", "image", "rm", "--force", tag], capture_output=True)


def test_a_second_run_checks_and_reports_ready():
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(
        "ready: localhost/chiops-debian:bookworm, localhost/chiops-debian-systemd:bookworm"
    )
