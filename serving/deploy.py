"""Run the service on a Ray this process starts (tests, benches, notebooks), through Serve's public REST API.

`deploy()` hands the whole multi-application config to Serve with the dashboard's
`PUT /api/serve/applications/`, the request `serve deploy` sends and KubeRay sends for a RayService's
serveConfigV2: Serve starts with the config's HTTP options and restarts only the apps whose entry changed
(a changed user_config only reconfigures). On a running `ray start` cluster use Ray's own CLI:
`serve deploy runs/serve.yaml --address http://127.0.0.1:<dashboard port>`.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from serving.serve_api import ServeAPI, ServeAPIError

# Ray is imported by the functions, so that this module can set up the environment before Ray reads it.
# Ray reads this once, when it is imported: "0" keeps a loopback node address loopback (Ray's switch for
# single-machine clusters). Without it Ray advertises, and its agents listen on, the machine's address.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's token authentication guards the dashboard (its job API runs code); `serve deploy` reads the same
# variables.
AUTH_MODE_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"


def _use_own_token() -> None:
    """A token of this process's own (a 0600 file, removed at exit) unless one is set.

    ray.init turns token auth on by itself for a new local cluster (and refreshes its cached config, which
    only it can do) unless RAY_AUTH_MODE says otherwise; left alone, it would share ~/.ray/auth_token with
    every cluster of the user.
    """
    if os.environ.get(TOKEN_PATH_ENV):
        return
    directory = tempfile.mkdtemp(prefix="chiops-ray-token-")
    atexit.register(shutil.rmtree, directory, True)
    path = Path(directory) / "auth_token"
    path.touch(mode=0o600)
    path.write_text(secrets.token_hex(32))
    os.environ[TOKEN_PATH_ENV] = str(path)


def _token_file() -> str | None:
    path = os.environ.get(TOKEN_PATH_ENV)
    return path if os.environ.get(AUTH_MODE_ENV) == "token" and path else None


def init_local_ray(attempts: int = 5, **options):
    """ray.init(address="local") on loopback, its dashboard on 127.0.0.1 behind a token; returns the context.

    Tried again when the node does not come up in time: on a loaded machine Ray's dashboard agent can take
    longer to start than the raylet waits for it (the raylet then exits: "The current node timed out during
    startup"); that is Ray's start-up race, not the service. The processes a failed attempt started (GCS,
    agents) outlive it and are stopped here, by PID.
    """
    import psutil
    import ray

    if os.environ.get(LOOPBACK_ENV) != "0":
        raise RuntimeError(f"set {LOOPBACK_ENV}=0 before Ray is imported, or Ray listens on every address")
    options.setdefault("dashboard_host", "127.0.0.1")
    _use_own_token()
    me = psutil.Process()
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            context = ray.init(address="local", include_dashboard=True, **options)
            break
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            print(f"Ray did not start (attempt {attempt}/{attempts}): {exc}; trying again", flush=True)
            ray.shutdown()
            for proc in me.children(recursive=True):
                if proc.pid not in before:
                    proc.kill()
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"Ray started on {node_ip}, not loopback: {LOOPBACK_ENV}=0 came after Ray loaded")
    return context


def dashboard_url(context) -> str:
    return f"http://{context.dashboard_url}"


def deploy(config: dict, dashboard: str, timeout_s: float = 60.0) -> None:
    """Submit `config` (validated by Serve's own schema first) as the cluster's whole set of Serve apps."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
    try:
        ServeAPI(dashboard, _token_file(), timeout_s).deploy(config)
    except ServeAPIError as exc:
        raise RuntimeError(f"Serve refused the config: {exc}") from None


def wait_running(app_names, timeout_s: float = 240.0, progress=print) -> None:
    """Block until every named app is RUNNING; raise with Serve's own message when one fails or time is up."""
    from ray import serve

    deadline, last = time.monotonic() + timeout_s, None
    while True:
        apps = serve.status().applications
        states = {name: (apps[name].status if name in apps else "NOT_STARTED") for name in app_names}
        failed = {n: apps[n].message for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed:
            raise RuntimeError(f"Serve apps failed: {failed}")
        if all(s == "RUNNING" for s in states.values()):
            return
        if states != last and progress:
            progress(f"waiting for Serve apps: {states}")
            last = states
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve apps not running after {timeout_s:.0f} s: {states}")
        time.sleep(1.0)
