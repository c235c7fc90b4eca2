"""Generate the Serve multi-application config for an inventory's environments from the model registry.

The same dict is what ``serve deploy`` takes locally and what the Kubernetes backend embeds as a RayService's
serveConfigV2. Aliases are resolved to concrete versions here, so a config names exactly what it serves and an
alias move shows up as a changed app (Serve restarts only apps whose entry changed).

    python -m serving.config --registry registry --inventory inventories/local \
        --token-key-file ~/.config/chiops/token.key --canary-weight 0.1 -o runs/serve.yaml
"""

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from model_registry import Registry, RegistryError
from serving.feedback_store import STORE_ENV, open_store
from serving.split import check_weight
from serving.tokens import KEY_FILE_ENV, ensure_key_file

ENVIRONMENTS = ("staging", "canary", "production")
PUBLIC_APP = "public"
STABLE_ENVIRONMENT = "production"
CANARY_ENVIRONMENT = "canary"


@dataclass
class Tuning:
    """Replica and batching settings (see docs/serving.md for the measured trade-offs)."""

    ingress_replicas: int = 1
    classifier_replicas: int = 1
    router_replicas: int = 1
    # Start the new replica before the old one stops: with one replica and the default 0, an update is an
    # outage.
    max_surge_percent: int = 100
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.002
    max_ongoing_requests: int = 64
    # Fractions of a CPU, so that 3 environments + the router fit a 2-core node; Ray does not cap usage by
    # them.
    ingress_cpus: float = 0.1
    classifier_cpus: float = 0.25
    router_cpus: float = 0.1
    # GPUs per model replica (Classifier, or the fused ingress). Ray hides GPUs from actors that reserve none,
    # so on a GPU node the model sees one only with this above 0; a fraction lets a surge replica share it.
    classifier_gpus: float = 0.0
    torch_threads: int = 1
    # Fused: the ingress runs the model (one deployment, one hop less; torch in the ingress replica).
    fused: bool = False
    # Inline: the public router also runs production's model, so stable traffic on the public route takes no
    # hop beyond the proxy (a second copy of the production model, in the router replica).
    inline_stable: bool = False
    # A canary call that takes longer is given up and answered by stable (and counted as a canary 503).
    canary_timeout_s: float = 10.0
    max_body_bytes: int = 256 * 1024
    max_batch: int = 64
    # Where accepted feedback is kept (serving/feedback_store.py): sqlite:///abs/path.db or
    # postgresql://user@host/db (no password in the URL). None: feedback is counted, not kept.
    feedback_store: str | None = None
    extra_env_vars: dict = field(default_factory=dict)

    @classmethod
    def for_layout(cls, layout: str, **overrides) -> "Tuning":
        """The settings of a named layout (LAYOUTS; docs/serving.md has the measured trade-offs)."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
        return cls(**{**LAYOUTS[layout], **overrides})


# Replica settings for the fast layouts, read by each replica's Ray Serve at start (runtime_env): user code on
# the replica's own event loop instead of a separate thread (one thread switch less per request; our handlers
# are async and the model call is short), and the request-path log buffered.
FAST_REPLICA_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
}

LAYOUTS: dict[str, dict] = {
    # ingress (torch-free) -> Classifier per environment; torch-free router: the rollout's reference layout
    "split": {},
    # the model inside each environment's ingress
    "fused": {"fused": True, "extra_env_vars": FAST_REPLICA_ENV},
    # fused, and the router runs production's model itself: the public route's stable traffic takes one hop
    "inline": {"fused": True, "inline_stable": True, "extra_env_vars": FAST_REPLICA_ENV},
}


def _deployment(name: str, replicas: int, cpus: float, tuning: Tuning, gpus: float = 0.0, **extra) -> dict:
    return {
        "name": name,
        "num_replicas": replicas,
        "max_ongoing_requests": tuning.max_ongoing_requests,
        "max_surge_percent": tuning.max_surge_percent,
        "ray_actor_options": {"num_cpus": cpus, **({"num_gpus": gpus} if gpus > 0 else {})},
        **extra,
    }


def resolve_versions(registry: str, environments, versions: dict | None = None) -> dict[str, str]:
    """environment → concrete version; an environment whose alias points nowhere is left out."""
    reg, versions, out = Registry(registry), dict(versions or {}), {}
    unknown = set(versions) - set(environments)
    if unknown:
        raise ValueError(f"versions given for environments not served here: {sorted(unknown)}")
    for env in environments:
        if env not in ENVIRONMENTS:
            raise ValueError(f"unknown environment {env!r}; expected one of {ENVIRONMENTS}")
        if env in versions:
            out[env] = reg.require(versions[env])
        elif reg.alias_target(env) is not None:
            out[env] = reg.require(env)
    return out


def build_serve_config(
    registry: str,
    environments=ENVIRONMENTS,
    versions: dict | None = None,
    canary_weight: float = 0.0,
    http_host: str = "127.0.0.1",
    http_port: int = 8000,
    token_key_file: str | None = None,
    tuning: Tuning | None = None,
    public: bool | None = None,
    route_prefix: str | None = None,
) -> dict:
    """The Serve config dict (ServeDeploySchema layout) for ``environments``.

    ``versions`` maps an environment to a version or alias; by default each environment serves the alias of
    its own name. ``public`` adds the router at ``/`` (default: when production is served). ``token_key_file``
    is passed to the replicas as $CHIOPS_TOKEN_KEY_FILE (the path, never the key); without it the replicas
    must get $CHIOPS_TOKEN_KEY from their environment (on Kubernetes, from a Secret).
    ``route_prefix`` replaces every environment app's ``/<environment>``: on Kubernetes each environment is
    its own RayService with one app, served at ``/`` (the HTTPRoutes strip their path prefixes before it).
    """
    tuning = tuning or Tuning()
    canary_weight = check_weight(canary_weight)
    resolved = resolve_versions(registry, environments, versions)
    if not resolved:
        raise RegistryError(f"no model to serve: none of {list(environments)} has a version in {registry}")
    env_vars = {str(k): str(v) for k, v in tuning.extra_env_vars.items()}
    if tuning.feedback_store:
        open_store(tuning.feedback_store)  # refuses a malformed URL or one carrying a password, here
        env_vars[STORE_ENV] = tuning.feedback_store
    if token_key_file:
        env_vars[KEY_FILE_ENV] = str(Path(token_key_file).resolve())
    limits = {"max_body_bytes": tuning.max_body_bytes, "max_batch": tuning.max_batch}
    model_args = {
        "max_batch_size": tuning.max_batch_size,
        "batch_wait_timeout_s": tuning.batch_wait_timeout_s,
        "torch_threads": tuning.torch_threads,
    }

    applications = []
    for env, version in resolved.items():
        app = {
            "name": env,
            "route_prefix": route_prefix or f"/{env}",
            "import_path": "serving.apps:environment_app",
            "args": {
                "environment": env,
                "registry": registry,
                "model_version": version,
                **model_args,
                "fused": tuning.fused,
                **limits,
            },
            "deployments": (
                [
                    _deployment(
                        "EnvironmentIngress",
                        tuning.classifier_replicas,
                        tuning.classifier_cpus,
                        tuning,
                        gpus=tuning.classifier_gpus,
                    )
                ]
                if tuning.fused
                else [
                    _deployment("EnvironmentIngress", tuning.ingress_replicas, tuning.ingress_cpus, tuning),
                    _deployment(
                        "Classifier",
                        tuning.classifier_replicas,
                        tuning.classifier_cpus,
                        tuning,
                        gpus=tuning.classifier_gpus,
                    ),
                ]
            ),
        }
        if env_vars:
            app["runtime_env"] = {"env_vars": dict(env_vars)}
        applications.append(app)

    if public is None:
        public = STABLE_ENVIRONMENT in resolved
    if public:
        if STABLE_ENVIRONMENT not in resolved:
            raise ValueError("the public router needs a production model to route to")
        args = {
            "stable_app": STABLE_ENVIRONMENT,
            "canary_timeout_s": tuning.canary_timeout_s,
            **limits,
        }
        if tuning.inline_stable:
            args.update(registry=registry, stable_version=resolved[STABLE_ENVIRONMENT], **model_args)
        app = {
            "name": PUBLIC_APP,
            "route_prefix": "/",
            "import_path": "serving.apps:public_app",
            "args": args,
            "deployments": [
                _deployment(
                    "PublicRouter",
                    tuning.router_replicas,
                    tuning.classifier_cpus if tuning.inline_stable else tuning.router_cpus,
                    tuning,
                    # the canary is user_config, not args: a new one reconfigures the running router
                    user_config={
                        "canary_weight": canary_weight,
                        "canary_app": CANARY_ENVIRONMENT if CANARY_ENVIRONMENT in resolved else None,
                        "canary_version": resolved.get(CANARY_ENVIRONMENT),
                    },
                )
            ],
        }
        if env_vars:
            app["runtime_env"] = {"env_vars": dict(env_vars)}
        applications.append(app)

    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": http_host, "port": int(http_port)},
        "applications": applications,
    }


def validate(config: dict):
    """Parse with Ray Serve's own schema; raises pydantic's ValidationError on a config Serve would refuse."""
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(config)


def inventory_environments(inventory: str) -> list[str]:
    path = Path(inventory) / "group_vars" / "all" / "main.yml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    envs = data.get("chiops_environments")
    if not isinstance(envs, list) or not envs:
        raise ValueError(f"{path} has no chiops_environments list")
    return [str(e) for e in envs]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected ENVIRONMENT=VERSION_OR_ALIAS, got {text!r}")
    return key, value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.config", description=__doc__.splitlines()[0])
    p.add_argument("--registry", default="registry", help="registry root (directory or s3://BUCKET/PREFIX)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--inventory", help="inventory directory; serves its chiops_environments")
    where.add_argument("--environments", nargs="+", choices=ENVIRONMENTS, help="environments to serve")
    p.add_argument(
        "--version",
        action="append",
        type=_key_value,
        default=[],
        metavar="ENV=REF",
        help="serve this version or alias in ENV instead of the alias named ENV (repeatable)",
    )
    p.add_argument("--canary-weight", type=float, default=0.0)
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-key-file", help="token key file for the replicas; created (0600) if missing")
    p.add_argument("--replicas", type=int, default=1, help="replicas of each ingress and model deployment")
    p.add_argument("--max-batch-size", type=int, default=Tuning.max_batch_size)
    p.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="split",
        help="split: ingress -> Classifier, torch-free router (default); fused: the model in the ingress; "
        "inline: fused, and the public router runs production's model itself (docs/serving.md)",
    )
    p.add_argument("--fused", action="store_true", help="same as --layout fused")
    p.add_argument("--classifier-gpus", type=float, default=0.0, help="GPUs per model replica (GPU nodes)")
    p.add_argument(
        "--feedback-store",
        help="keep accepted feedback here: sqlite:///abs/path.db or postgresql://user@host/db "
        "(password from PGPASSWORD/PGPASSFILE in the replicas' environment); default: not kept",
    )
    p.add_argument("--no-public", action="store_true", help="leave out the public router")
    p.add_argument("--route-prefix", help="route prefix of every environment app (default /<environment>)")
    p.add_argument("-o", "--output", help="write the YAML here (default: stdout)")
    a = p.parse_args(argv)

    try:
        envs = inventory_environments(a.inventory) if a.inventory else (a.environments or list(ENVIRONMENTS))
        if a.token_key_file:
            ensure_key_file(a.token_key_file)
        tuning = Tuning.for_layout(
            "fused" if a.fused and a.layout == "split" else a.layout,
            ingress_replicas=a.replicas,
            classifier_replicas=a.replicas,
            max_batch_size=a.max_batch_size,
            classifier_gpus=a.classifier_gpus,
            feedback_store=a.feedback_store,
        )
        config = build_serve_config(
            a.registry,
            envs,
            versions=dict(a.version),
            canary_weight=a.canary_weight,
            http_host=a.host,
            http_port=a.port,
            token_key_file=a.token_key_file,
            tuning=tuning,
            public=False if a.no_public else None,
            route_prefix=a.route_prefix,
        )
        validate(config)
    except (ValueError, RegistryError) as exc:
        print(f"serving.config: {exc}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(config, sort_keys=False)
    if a.output:
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        Path(a.output).write_text(text)
        print(f"wrote {a.output}: apps {[app['name'] for app in config['applications']]}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
