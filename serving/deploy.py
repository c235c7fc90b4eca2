"""Apply a generated Serve config to the Ray cluster this process is connected to, and wait until it runs.

This is what ``serve deploy`` does through the dashboard's REST API, without needing the dashboard: start
Serve with the config's HTTP options (no-op if it runs) and hand the whole multi-app config to the controller,
which restarts only the apps whose entry changed and reconfigures deployments whose user_config changed.
"""

import time

from ray import serve
from ray.serve._private import api as serve_api
from ray.serve.schema import ServeDeploySchema


def init_local_ray(attempts: int = 5, **options) -> None:
    """ray.init(address="local") for tests and benches, tried again when the node does not come up in time.

    On a loaded machine Ray's dashboard agent can take longer to start than the raylet waits for it (the
    raylet then exits: "The current node timed out during startup"); that is Ray's start-up race, not the
    service. The processes a failed attempt started (GCS, agents) outlive it and are stopped here, by PID.
    """
    import psutil
    import ray

    me = psutil.Process()
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            ray.init(address="local", **options)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            print(f"Ray did not start (attempt {attempt}/{attempts}): {exc}; trying again", flush=True)
            ray.shutdown()
            for proc in me.children(recursive=True):
                if proc.pid not in before:
                    proc.kill()


def deploy(config: dict) -> None:
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    client.deploy_apps(schema, _blocking=False)


def wait_running(app_names, timeout_s: float = 240.0, progress=print) -> None:
    """Block until every named app is RUNNING; raise with Serve's own message when one fails or time is up."""
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


def main(argv=None) -> int:
    import argparse
    import sys

    import ray
    import yaml

    p = argparse.ArgumentParser(prog="python -m serving.deploy", description=__doc__.splitlines()[0])
    p.add_argument("config", help="YAML written by python -m serving.config")
    p.add_argument("--address", default="auto", help="Ray cluster to connect to (default: the running one)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the apps to run")
    a = p.parse_args(argv)
    with open(a.config) as fh:
        config = yaml.safe_load(fh)
    ray.init(address=a.address, logging_level="ERROR")
    try:
        deploy(config)
        wait_running([app["name"] for app in config["applications"]], timeout_s=a.timeout)
    except (RuntimeError, TimeoutError, ValueError) as exc:
        print(f"serving.deploy: {exc}", file=sys.stderr)
        return 1
    print(f"running: {[app['name'] for app in config['applications']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
