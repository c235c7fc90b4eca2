"""The GitOps backend: desired state in its own git repository, applied by ArgoCD, proven on the cluster.

deploy / set_split / remove render an environment with roles/environment_manifests (playbooks/k8s_render.yml)
into a private clone of the desired-state repository, commit only ``environments/<env>/`` and push
fast-forward-or-fail; Change.commit is the commit that holds the change. The user's source checkout is never
touched or pushed.

wait_serving proves, all at once, that the cluster runs what git says:
- ArgoCD's Application ``chiops-<env>`` has synced a revision that contains the environment's last commit, and
  is Synced and Healthy;
- the RayService is the new generation (metadata.generation == status.observedGeneration) carrying the
  version, Ready and not UpgradeInProgress — a previous generation that is still Ready never passes;
- ``/version`` through the gateway answers the version.
wait_split does the same for the public HTTPRoute: synced commit, live weights, and the Gateway's Accepted
condition for the route's current generation.

Settings (inventory variables, passed by the engine through rollout.backends.load):
  chiops_desired_state_repo   git URL of the desired-state repository (required)
  chiops_desired_state_branch branch ArgoCD follows (main)
  chiops_desired_state_dir    the private clone (default ~/.cache/chiops/desired-state/<hash of the URL>)
  chiops_registry             model registry root the pods read (required)
  chiops_kubeconfig           kubeconfig of the cluster (required for the waits)
  chiops_gateway_url          base URL of the public Gateway as the controller reaches it (required for waits)
  rollout_prometheus_url      the Prometheus the gates read
  chiops_argocd_namespace     where ArgoCD's Applications live (argocd)
  chiops_wait_poll_seconds    poll interval of the waits (5)
  environment_manifests_*     passed to the role as they are (image, GPUs, resources, gateway...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from rollout.backend import BackendError, Change, Progress

ROOT = Path(__file__).resolve().parents[2]
RENDER_PLAYBOOK = ROOT / "playbooks" / "k8s_render.yml"
ENVIRONMENTS = ("staging", "canary", "production")
CANDIDATES = ("staging", "canary")
ENVIRONMENTS_DIR = "environments"
PUBLIC_ROUTE = "public-httproute.yaml"
WEIGHT_ANNOTATION = "chiops.io/canary-weight"
VERSION_LABEL = "chiops.io/model-version"
# Set by the backend for each render, never by the inventory.
PER_RENDER = {
    f"environment_manifests_{name}"
    for name in ("root", "environment", "model_version", "model_uri", "serve_config", "canary_weight")
}
# Half a GPU per model replica: the surge replica of an update (max_surge_percent) fits beside the old one.
GPUS_PER_REPLICA = 0.5


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chiops" / "desired-state"


@dataclasses.dataclass(frozen=True)
class GitOpsSettings:
    repo_url: str
    registry: str
    branch: str = "main"
    clone_dir: Path | None = None
    kubeconfig: str | None = None
    gateway_url: str | None = None
    prometheus_url: str = "http://127.0.0.1:9090"
    argocd_namespace: str = "argocd"
    poll_s: float = 5.0
    render_vars: Mapping = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, settings: Mapping) -> GitOpsSettings:
        missing = [k for k in ("chiops_desired_state_repo", "chiops_registry") if not settings.get(k)]
        if missing:
            raise BackendError(f"the gitops backend needs {', '.join(missing)} in the inventory")
        url = str(settings["chiops_desired_state_repo"])
        clone = (
            settings.get("chiops_desired_state_dir")
            or _cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16]
        )
        return cls(
            repo_url=url,
            registry=str(settings["chiops_registry"]),
            branch=str(settings.get("chiops_desired_state_branch") or "main"),
            clone_dir=Path(clone).expanduser(),
            kubeconfig=settings.get("chiops_kubeconfig") or None,
            gateway_url=(settings.get("chiops_gateway_url") or "").rstrip("/") or None,
            prometheus_url=str(settings.get("rollout_prometheus_url") or cls.prometheus_url),
            argocd_namespace=str(settings.get("chiops_argocd_namespace") or "argocd"),
            poll_s=float(settings.get("chiops_wait_poll_seconds") or 5.0),
            render_vars={
                k: v
                for k, v in settings.items()
                if k.startswith("environment_manifests_") and k not in PER_RENDER
            },
        )


class DesiredStateRepo:
    """A private clone of the desired-state repository; every change is one commit pushed fast-forward."""

    def __init__(self, url: str, branch: str, directory: Path):
        self.url, self.branch, self.dir = url, branch, directory

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        env.setdefault("GIT_AUTHOR_NAME", "ChiOps rollout")
        env.setdefault("GIT_AUTHOR_EMAIL", "rollout@chiops.invalid")
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
        proc = subprocess.run(["git", "-C", str(self.dir), *args], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise BackendError(
                f"git {' '.join(args[:2])} in {self.dir}: {proc.stderr.strip() or proc.stdout}"
            )
        return proc

    def sync(self) -> None:
        """Make the clone exactly the remote branch (creating the branch in an empty repository)."""
        if not (self.dir / ".git").is_dir():
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self.git("init", "-q", "-b", self.branch)
            self.git("remote", "add", "origin", self.url)
        self.git("remote", "set-url", "origin", self.url)
        heads = self.git("ls-remote", "--heads", "origin", self.branch).stdout.strip()
        if not heads:
            # An empty desired-state repository: its first commit says what it is; ArgoCD's generator finds
            # no environments/<env>/ yet and so creates no Application.
            self.git("checkout", "-q", "--orphan", f"chiops-init-{os.getpid()}")
            self.git("rm", "-rqf", "--ignore-unmatch", ".")
            (self.dir / "README.md").write_text(
                "# ChiOps desired state\n\n"
                "Written by the rollout (rollout/backends/gitops.py); ArgoCD applies "
                "environments/<env>/. Do not edit by hand.\n"
            )
            self.git("add", "README.md")
            self.git("commit", "-q", "-m", "desired state: initial commit")
            self.push()
        self.git("fetch", "-q", "origin", f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}")
        self.git("checkout", "-q", "-B", self.branch, f"origin/{self.branch}")
        self.git("reset", "-q", "--hard", f"origin/{self.branch}")
        self.git("clean", "-qfdx")

    def environment_dir(self, env: str) -> Path:
        return self.dir / ENVIRONMENTS_DIR / env

    def commit(self, env: str, message: str) -> str | None:
        """Commit environments/<env>/ only; None when it did not change."""
        path = f"{ENVIRONMENTS_DIR}/{env}"
        if not (self.dir / path).exists() and not self.git("ls-files", "--", path).stdout:
            return None  # absent in git and on disk: nothing to commit
        self.git("add", "-A", "--", path)
        if self.git("diff", "--cached", "--quiet", check=False).returncode == 0:
            return None
        self.git("commit", "-q", "-m", message, "--", path)
        return self.head()

    def push(self) -> None:
        """Fast-forward or fail: no force, so a branch someone else moved rejects the push."""
        proc = self.git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}", check=False)
        if proc.returncode != 0:
            with contextlib.suppress(BackendError):
                self.git("fetch", "-q", "origin")
                self.git("reset", "-q", "--hard", f"origin/{self.branch}")
            raise BackendError(
                f"push to {self.url} {self.branch} was not a fast-forward (someone else changed the desired "
                f"state); nothing was pushed, rerun to apply on top of it: {proc.stderr.strip()}"
            )

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def last_commit(self, env: str) -> str | None:
        sha = self.git("log", "-1", "--format=%H", "--", f"{ENVIRONMENTS_DIR}/{env}").stdout.strip()
        return sha or None

    def contains(self, revision: str, commit: str) -> bool:
        """Whether `revision` (what ArgoCD synced) is `commit` or a descendant of it."""
        if revision == commit:
            return True
        if self.git("cat-file", "-e", f"{revision}^{{commit}}", check=False).returncode != 0:
            self.git("fetch", "-q", "origin", check=False)
        return self.git("merge-base", "--is-ancestor", commit, revision, check=False).returncode == 0


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None


def _condition(obj: Mapping, kind: str) -> Mapping | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def rayservice_state(obj: Mapping, version: str) -> str | None:
    """None when the live RayService is the new generation, serving `version`, Ready; else what is missing."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    live_version = (meta.get("labels") or {}).get(VERSION_LABEL)
    if live_version != version:
        return f"the live RayService carries {live_version}, not {version} (ArgoCD has not applied it)"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if observed != generation:
        return f"KubeRay has observed generation {observed}, the spec is at {generation}"
    ready = _condition(obj, "Ready")
    if not ready or ready.get("status") != "True":
        return f"not Ready ({(ready or {}).get('reason', 'no Ready condition')})"
    upgrading = _condition(obj, "UpgradeInProgress")
    if upgrading and upgrading.get("status") == "True":
        return "UpgradeInProgress: the new cluster is not serving yet"
    return None


def application_state(obj: Mapping | None, repo: DesiredStateRepo, commit: str) -> str | None:
    """None when ArgoCD synced a revision containing `commit` and the Application is Synced and Healthy."""
    if obj is None:
        return "no ArgoCD Application yet"
    sync = (obj.get("status") or {}).get("sync") or {}
    health = ((obj.get("status") or {}).get("health") or {}).get("status")
    revision = sync.get("revision")
    if not revision or not repo.contains(revision, commit):
        return f"ArgoCD synced {(revision or 'nothing')[:12]}, not yet {commit[:12]}"
    if sync.get("status") != "Synced" or health != "Healthy":
        return f"ArgoCD: {sync.get('status')}/{health}"
    return None


def route_state(obj: Mapping | None, weights: list[int]) -> str | None:
    """None when the live HTTPRoute has `weights` and the Gateway accepted this generation of it."""
    if obj is None:
        return "no live HTTPRoute"
    live = [
        ref.get("weight", 1) for rule in obj["spec"].get("rules", []) for ref in rule.get("backendRefs", [])
    ]
    if live != weights:
        return f"live weights {live}, want {weights}"
    generation = obj["metadata"].get("generation")
    parents = (obj.get("status") or {}).get("parents") or []
    for parent in parents:
        conds = {c["type"]: c for c in parent.get("conditions", [])}
        accepted = conds.get("Accepted", {})
        if accepted.get("status") == "True" and accepted.get("observedGeneration") == generation:
            return None
    return f"the Gateway has not accepted generation {generation} of the route"


class GitOpsBackend:
    name = "gitops"

    def __init__(self, settings: Mapping):
        self.settings = GitOpsSettings.from_mapping(settings)
        s = self.settings
        self.repo = DesiredStateRepo(s.repo_url, s.branch, s.clone_dir)
        self._kube = None

    # ---- rendering (the same code path the tests render with) ----
    def serve_config(self, env: str, version: str) -> dict:
        from serving.config import Tuning, build_serve_config, validate

        gpus = int(self.settings.render_vars.get("environment_manifests_gpus_per_worker", 0) or 0)
        config = build_serve_config(
            self.settings.registry,
            [env],
            versions={env: version},
            http_host="0.0.0.0",
            tuning=Tuning(classifier_gpus=GPUS_PER_REPLICA if gpus > 0 else 0.0),
            public=False,
            route_prefix="/",
        )
        validate(config)
        return config

    def model_uri(self, version: str) -> str:
        # The registry layout of docs/contracts.md: a version's files are under <root>/versions/<version>.
        return f"{self.settings.registry.rstrip('/')}/versions/{version}"

    def render(self, root: Path, env: str, version: str, weight_percent: int = 0) -> None:
        """Render environments/<env>/ under `root` with roles/environment_manifests."""
        self.render_many(root, [(env, version, weight_percent)])

    def render_many(self, root: Path, wanted: list[tuple[str, str, int]]) -> None:
        """Render several (environment, version, canary weight %) in one ansible-playbook run."""
        items = []
        for env, version, weight_percent in wanted:
            if env not in ENVIRONMENTS:
                raise BackendError(f"unknown environment {env!r}; expected one of {ENVIRONMENTS}")
            try:
                serve_config = self.serve_config(env, version)
            except Exception as exc:  # the registry or Serve's schema refused: say why, the engine rolls back
                raise BackendError(f"cannot build the Serve config of {env} for {version}: {exc}") from exc
            items.append(
                {
                    "environment": env,
                    "model_version": version,
                    "model_uri": self.model_uri(version),
                    "serve_config": serve_config,
                    "canary_weight": int(weight_percent),
                }
            )
        extra = {
            **self.settings.render_vars,
            "environment_manifests_root": str(root),
            "k8s_render": items,
            # The role runs on this machine, with this interpreter (the venv the rollout runs in).
            "ansible_python_interpreter": sys.executable,
        }
        playbook = Path(sys.executable).with_name("ansible-playbook")
        command = str(playbook) if playbook.exists() else "ansible-playbook"
        env_vars = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
            ANSIBLE_NOCOLOR="1",
        )
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(extra, fh)
        try:
            proc = subprocess.run(
                [command, "-i", "localhost,", str(RENDER_PLAYBOOK), "-e", f"@{fh.name}"],
                cwd=ROOT,
                env=env_vars,
                capture_output=True,
                text=True,
            )
        finally:
            os.unlink(fh.name)
        if proc.returncode != 0:
            names = ", ".join(env for env, _, _ in wanted)
            raise BackendError(f"rendering {names} failed: {(proc.stdout + proc.stderr)[-2000:]}")

    # ---- what the desired state says now ----
    def committed_version(self, env: str) -> str | None:
        doc = _read_yaml(self.repo.environment_dir(env) / "rayservice.yaml")
        return None if doc is None else doc["metadata"]["labels"].get(VERSION_LABEL)

    def committed_weight(self) -> int:
        doc = _read_yaml(self.repo.environment_dir("production") / PUBLIC_ROUTE)
        return 0 if doc is None else int(doc["metadata"]["annotations"].get(WEIGHT_ANNOTATION, 0))

    def _change(self, env: str, message: str) -> Change:
        commit = self.repo.commit(env, message)
        if commit is None:
            return Change(f"{message} (already so in git)", self.repo.last_commit(env))
        self.repo.push()
        return Change(message, commit)

    # ---- the Backend protocol ----
    def deploy(self, environment: str, version: str) -> Change:
        self.repo.sync()
        weight = self.committed_weight() if environment == "production" else 0
        self.render(self.repo.dir / ENVIRONMENTS_DIR, environment, version, weight)
        return self._change(environment, f"rollout: {environment} serves {version}")

    def set_split(self, stable: str, candidate: str | None, weight: float) -> Change:
        if not 0.0 <= weight <= 1.0:
            raise BackendError(f"weight {weight} is not a fraction in 0..1")
        percent = round(weight * 100)
        self.repo.sync()
        if candidate is None and percent:
            raise BackendError("a canary weight above 0 needs a candidate")
        if candidate is not None and percent:
            canary = self.committed_version("canary")
            if canary != candidate:
                raise BackendError(f"the canary serves {canary} in git, not {candidate}: deploy it first")
        self.render(self.repo.dir / ENVIRONMENTS_DIR, "production", stable, percent)
        return self._change(
            "production", f"rollout: public route {100 - percent}% {stable}, {percent}% canary"
        )

    def remove(self, environment: str) -> Change:
        if environment not in CANDIDATES:
            raise BackendError(
                f"only a candidate environment can be removed ({CANDIDATES}), not {environment}"
            )
        self.repo.sync()
        if environment == "canary" and self.committed_weight() > 0:
            raise BackendError("the public route still sends traffic to the canary: set the split to 0 first")
        directory = self.repo.environment_dir(environment)
        if directory.exists():
            shutil.rmtree(directory)
        commit = self.repo.commit(environment, f"rollout: remove {environment}")
        if commit is None:
            return Change(f"{environment} already absent from git")
        self.repo.push()
        return Change(f"rollout: remove {environment}", commit)

    def url(self, environment: str) -> str:
        if not self.settings.gateway_url:
            raise BackendError("chiops_gateway_url is not set: the controller cannot reach the gateway")
        return f"{self.settings.gateway_url}/{environment}"

    def prometheus_url(self) -> str:
        return self.settings.prometheus_url

    # ---- waits ----
    def _api(self):
        if self._kube is None:
            if not self.settings.kubeconfig:
                raise BackendError("chiops_kubeconfig is not set: the waits need the cluster's API")
            from kubernetes import client, config

            self._kube = client.CustomObjectsApi(
                config.new_client_from_config(config_file=self.settings.kubeconfig)
            )
        return self._kube

    def _get(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api().get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise BackendError(f"reading {plural}/{name} in {namespace}: {exc.status} {exc.reason}") from exc

    def _application(self, env: str) -> dict | None:
        return self._get(
            "argoproj.io", "v1alpha1", self.settings.argocd_namespace, "applications", f"chiops-{env}"
        )

    def served_version(self, environment: str) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.url(environment)}/version", timeout=5) as resp:
                return json.loads(resp.read()).get("model_version")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _wait(self, what: str, check, timeout_s: float, progress: Progress) -> None:
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            missing = check()
            if missing is None:
                progress(f"{what}: done")
                return
            if missing != last:
                progress(f"{what}: {missing}")
                last = missing
            if time.monotonic() >= deadline:
                raise BackendError(f"{what}: timed out after {timeout_s:.0f}s; last seen: {missing}")
            time.sleep(self.settings.poll_s)

    def wait_serving(self, environment: str, version: str, timeout_s: float, progress: Progress) -> None:
        self.repo.sync()
        if self.committed_version(environment) != version:
            raise BackendError(
                f"git says {environment} serves {self.committed_version(environment)}, "
                f"not {version}: deploy first"
            )
        commit = self.repo.last_commit(environment)
        ns = f"chiops-{environment}"

        def check() -> str | None:
            missing = application_state(self._application(environment), self.repo, commit)
            if missing:
                return missing
            service = self._get("ray.io", "v1", ns, "rayservices", f"chiops-{environment}")
            if service is None:
                return "no live RayService"
            missing = rayservice_state(service, version)
            if missing:
                return missing
            served = self.served_version(environment)
            if served != version:
                return f"{self.url(environment)}/version answers {served}, not {version}"
            return None

        self._wait(f"{environment} serving {version}", check, timeout_s, progress)

    def wait_split(self, weight: float, timeout_s: float, progress: Progress) -> None:
        self.repo.sync()
        percent = round(weight * 100)
        if self.committed_weight() != percent:
            raise BackendError(
                f"git says the canary gets {self.committed_weight()}%, not {percent}%: set it first"
            )
        route = _read_yaml(self.repo.environment_dir("production") / PUBLIC_ROUTE)
        weights = [ref["weight"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
        commit = self.repo.last_commit("production")

        def check() -> str | None:
            missing = application_state(self._application("production"), self.repo, commit)
            if missing:
                return missing
            live = self._get(
                "gateway.networking.k8s.io", "v1", "chiops-production", "httproutes", "chiops-public"
            )
            return route_state(live, weights)

        self._wait(f"public route at {percent}% canary", check, timeout_s, progress)
