"""Application builders named by the generated Serve config (``import_path: serving.apps:<builder>``).

Serve calls a builder with the application's ``args`` from the config. Imports stay inside the builders so
that building the public router never loads the model code.
"""

from typing import Any


def _required(args: dict, key: str, what: str) -> Any:
    if key not in args or args[key] in (None, ""):
        raise ValueError(f"{what} application args need {key!r}")
    return args[key]


LIMIT_KEYS = ("max_body_bytes", "max_batch", "token_max_age_s")


def _model_settings(args: dict, version: str, what: str, environment: str) -> dict:
    return {
        "registry": _required(args, "registry", what),
        "version": version,
        "environment": environment,
        "max_batch_size": int(args.get("max_batch_size", 16)),
        "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", 0.002)),
        "threads": int(args.get("torch_threads", 1)),
    }


def environment_app(args: dict):
    """One environment: EnvironmentIngress (HTTP, torch-free) → Classifier (the model, @serve.batch).

    With ``fused: true`` the ingress loads the model itself and there is no Classifier deployment.
    """
    from serving.ingress import EnvironmentIngress
    from serving.model import Classifier

    environment = _required(args, "environment", "environment")
    version = _required(args, "model_version", "environment")
    model = _model_settings(args, version, "environment", environment)
    options = {k: args[k] for k in LIMIT_KEYS if k in args}
    if args.get("fused"):
        # One deployment: the ingress runs the model itself (see docs/serving.md, "Performance").
        return EnvironmentIngress.bind(
            None, environment=environment, model_version=version, fused_model=model, **options
        )
    return EnvironmentIngress.bind(
        Classifier.bind(**model), environment=environment, model_version=version, **options
    )


def public_app(args: dict):
    """The router at ``/``; the canary (app, version, weight) comes from the router's user_config.

    Torch-free unless ``stable_version`` is given: then the router runs that production model itself.
    """
    from serving.router import PublicRouter

    stable = args.get("stable_version")
    stable_app = args.get("stable_app", "production")
    return PublicRouter.bind(
        stable_app=stable_app,
        canary_timeout_s=float(args.get("canary_timeout_s", 10.0)),
        stable_model=_model_settings(args, stable, "public", stable_app) if stable else None,
        **{k: args[k] for k in LIMIT_KEYS if k in args},
    )
