"""The local backend: Ray Serve on this machine (one app per environment plus the public router).

Every change is one whole multi-application config (serving.config.build_serve_config) applied through
Serve's REST API on Ray's dashboard (what `serve deploy` sends), which token authentication guards. What is
deployed is read back from Ray itself (what `serve config` prints), so the backend keeps no state of its own
that a killed controller could lose.

Settings (inventory variables, inventories/local/group_vars/all/rollout.yml):
  chiops_registry, chiops_run_dir, local_ray_dashboard_port, local_serve_http_port, local_ray_token_file,
  prometheus_listen_address, local_serve_replicas (1), chiops_feedback_store (none: feedback is only counted)

`python -m rollout.backends.local --settings FILE --version production=v1 [--version canary=v2 --weight 0.1]`
applies a set of versions directly (playbooks/serve.yml, local_platform.yml).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from rollout.backend import BackendError, Change, Progress
from serving.serve_api import ServeAPI, ServeAPIError

PUBLIC = "public"
ENVIRONMENTS = ("staging", "canary", "production")
POLL_S = 2.0


class LocalBackend:
    name = "local"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        try:
            self.registry = str(settings["chiops_registry"])
            self.run_dir = Path(settings["chiops_run_dir"])
            self.dashboard = f"http://127.0.0.1:{int(settings['local_ray_dashboard_port'])}"
            self.http_port = int(settings["local_serve_http_port"])
            self.token_file = str(settings["local_ray_token_file"])
            self.prometheus = f"http://{settings['prometheus_listen_address']}"
        except KeyError as exc:
            raise BackendError(f"local backend setting {exc} missing") from None
        self.api = ServeAPI(self.dashboard, self.token_file, timeout_s=120)
        self.replicas = int(settings.get("local_serve_replicas", 1))
        self.feedback_store = settings.get("chiops_feedback_store") or None
        self.sleep = time.sleep

    # ---- Ray ---------------------------------------------------------------------------------------
    def _applications(self) -> dict[str, dict]:
        try:
            return self.api.applications()
        except ServeAPIError as exc:
            raise BackendError(str(exc)) from None

    def deployed(self) -> tuple[dict[str, str], float]:
        """(environment → version, canary weight) of the config Ray runs now."""
        versions, weight = {}, 0.0
        for app in self._applications().values():
            doc = app.get("deployed_app_config")
            if not isinstance(doc, dict) or "name" not in doc:
                continue
            if doc["name"] in ENVIRONMENTS:
                versions[doc["name"]] = doc["args"]["model_version"]
            elif doc["name"] == PUBLIC:
                for deployment in doc.get("deployments", []):
                    weight = float((deployment.get("user_config") or {}).get("canary_weight", weight))
        return versions, weight

    def apply(self, versions: Mapping[str, str], weight: float) -> Change:
        """Run exactly `versions` ({environment: version}) with the router at `weight`; others are removed."""
        from serving.config import Tuning, build_serve_config, validate
        from serving.tokens import ensure_key_file

        if not versions:
            try:
                self.api.shutdown()
            except ServeAPIError as exc:
                raise BackendError(str(exc)) from None
            return Change("local: every Serve app removed")
        key_file = self.run_dir / "token.key"
        ensure_key_file(str(key_file))
        try:
            config = build_serve_config(
                self.registry,
                [e for e in ENVIRONMENTS if e in versions],
                versions=dict(versions),
                canary_weight=weight if "canary" in versions else 0.0,
                http_port=self.http_port,
                token_key_file=str(key_file),
                tuning=Tuning(
                    ingress_replicas=self.replicas,
                    classifier_replicas=self.replicas,
                    feedback_store=self.feedback_store,
                ),
            )
            validate(config)
        except Exception as exc:
            raise BackendError(f"cannot build the Serve config for {dict(versions)}: {exc}") from None
        path = self.run_dir / "serve.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        try:
            self.api.deploy(config)
        except ServeAPIError as exc:
            raise BackendError(f"Serve refused {path}: {exc}") from None
        listed = ", ".join(f"{e}={v}" for e, v in versions.items())
        return Change(f"local: serve deploy {listed}, canary weight {weight:g}")

    def wait_apps(self, timeout_s: float, progress: Progress) -> None:
        """Until every app in the config runs and removed apps are gone."""
        wanted, _ = self.deployed()
        names = set(wanted) | ({PUBLIC} if "production" in wanted else set())
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            apps = self._applications()
            states = {name: app.get("status") for name, app in apps.items()}
            failed = {n: s for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
            if failed:
                details = {n: apps[n].get("message", "")[-300:] for n in failed}
                raise BackendError(f"Serve apps failed: {failed} {details}")
            if set(states) == names and all(s == "RUNNING" for s in states.values()):
                return
            line = ", ".join(f"{n} {s}" for n, s in sorted(states.items()))
            if line != last:
                progress(f"  waiting for Serve apps: {line or 'none yet'}")
                last = line
            if time.monotonic() > deadline:
                raise BackendError(f"Serve apps not RUNNING after {timeout_s:.0f} s: {line}")
            self.sleep(POLL_S)

    # ---- Backend -----------------------------------------------------------------------------------
    def deploy(self, environment: str, version: str) -> Change:
        versions, weight = self.deployed()
        versions[environment] = version
        return self.apply(versions, weight)

    def set_split(self, stable: str, candidate: str | None, weight: float) -> Change:
        if candidate is None and weight:
            raise BackendError("a canary weight above 0 needs a candidate")
        versions, _ = self.deployed()
        versions["production"] = stable
        if candidate is None:
            versions.pop("canary", None)
        else:
            versions["canary"] = candidate
        return self.apply(versions, weight)

    def remove(self, environment: str) -> Change:
        versions, weight = self.deployed()
        if environment not in versions:
            return Change(f"local: {environment} not deployed")
        if environment == "canary" and weight > 0:
            raise BackendError(
                f"the canary still takes {weight:g} of the public route; set the weight to 0 first"
            )
        del versions[environment]
        return self.apply(versions, weight if "canary" in versions else 0.0)

    def _get(self, path: str) -> dict | None:
        try:
            response = httpx.get(f"{self.url('')}{path}", timeout=5)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def wait_serving(self, environment: str, version: str, timeout_s: float, progress: Progress) -> None:
        deadline = time.monotonic() + timeout_s
        self.wait_apps(timeout_s, progress)
        # RUNNING alone could be the previous generation of the app: /version must answer the new version.
        while True:
            answer = self._get(f"/{environment}/version")
            seen = (answer or {}).get("model_version")
            if seen == version:
                progress(f"  {environment} serves {version} (/{environment}/version)")
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"/{environment}/version answers {seen or 'nothing'} after {timeout_s:.0f} s, "
                    f"expected {version}"
                )
            self.sleep(POLL_S)

    def wait_split(self, weight: float, timeout_s: float, progress: Progress) -> None:
        deadline = time.monotonic() + timeout_s
        self.wait_apps(timeout_s, progress)
        versions, _ = self.deployed()
        if "production" not in versions:
            return  # no public route without production
        while True:
            answer = self._get("/version") or {}
            seen = answer.get("canary_weight")
            canary = (answer.get("canary") or {}).get("model_version")
            ok = seen is not None and abs(float(seen) - weight) < 1e-9
            if ok and weight > 0:
                ok = canary == versions.get("canary")
            if ok:
                progress(f"  public route applies canary weight {weight:g}")
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"public /version reports canary weight {seen} after {timeout_s:.0f} s, wanted {weight:g}"
                )
            self.sleep(POLL_S / 2)

    def url(self, environment: str) -> str:
        base = f"http://127.0.0.1:{self.http_port}"
        return f"{base}/{environment}" if environment else base

    def prometheus_url(self) -> str:
        return self.prometheus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rollout.backends.local", description=__doc__.splitlines()[0])
    p.add_argument("--settings", required=True, help="JSON file of the local backend's settings")
    p.add_argument("--version", action="append", default=[], metavar="ENV=VERSION")
    p.add_argument("--production-alias", action="store_true", help="serve the registry's production alias")
    p.add_argument("--weight", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=600)
    a = p.parse_args(argv)
    try:
        settings = json.loads(Path(a.settings).read_text())
        settings = settings.get("backend_settings", settings)  # the rollout's settings file, or bare settings
        versions = dict(v.split("=", 1) for v in a.version)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backend = LocalBackend(settings)
    if a.production_alias:
        from rollout import aliases

        production = aliases.read(backend.registry)["aliases"]["production"]
        if production is None:
            print("no production model registered: nothing to serve")
            return 0
        versions["production"] = production
    try:
        backend.apply(versions, a.weight)
        for env, version in versions.items():
            backend.wait_serving(env, version, a.timeout, print)
        if "production" in versions:
            backend.wait_split(a.weight if "canary" in versions else 0.0, a.timeout, print)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
