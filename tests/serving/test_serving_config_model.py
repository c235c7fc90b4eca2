"""Config generation (parsed by Ray Serve's own schema), the registry reader and the model wrapper (no
Ray)."""

import json

import numpy as np
import pytest
import torch
import yaml
from ray.serve.schema import ServeDeploySchema

from model_registry import Registry, RegistryError
from serving import config as serve_config
from serving.predictor import Predictor
from serving.tokens import KEY_FILE_ENV


def apps_by_name(cfg):
    return {a["name"]: a for a in cfg["applications"]}


def test_config_for_all_environments_parses_with_serve_schema(registry_root, tmp_path):
    key = tmp_path / "token.key"
    cfg = serve_config.build_serve_config(str(registry_root), canary_weight=0.25, token_key_file=str(key))
    schema = ServeDeploySchema.model_validate(cfg)
    assert schema.http_options.host == "127.0.0.1"
    apps = apps_by_name(cfg)
    assert list(apps) == ["staging", "canary", "production", "public"]
    assert {n: a["args"]["model_version"] for n, a in apps.items() if n != "public"} == {
        "staging": "v2",
        "canary": "v2",
        "production": "v1",
    }
    assert [a["route_prefix"] for a in cfg["applications"]] == ["/staging", "/canary", "/production", "/"]
    router = apps["public"]["deployments"][0]
    assert router["user_config"] == {"canary_weight": 0.25, "canary_app": "canary", "canary_version": "v2"}
    # zero-downtime updates: a replacement starts before the old replica stops
    assert all(d["max_surge_percent"] == 100 for a in cfg["applications"] for d in a["deployments"])
    # the replicas get the key's path, never the key
    assert apps["production"]["runtime_env"]["env_vars"] == {KEY_FILE_ENV: str(key.resolve())}
    assert "key" not in json.dumps(cfg).replace(str(key.resolve()), "").replace(KEY_FILE_ENV, "").lower()


def test_unset_alias_leaves_the_app_out(tmp_path):
    from tests.trained_registry import build_registry

    root = build_registry(tmp_path / "reg", versions=((0, 1),), aliases={"production": "v1"})
    cfg = serve_config.build_serve_config(str(root))
    ServeDeploySchema.model_validate(cfg)
    apps = apps_by_name(cfg)
    assert list(apps) == ["production", "public"]
    router = apps["public"]["deployments"][0]
    assert (router["user_config"]["canary_app"], router["user_config"]["canary_version"]) == (None, None)


def test_explicit_version_and_errors(registry_root):
    cfg = serve_config.build_serve_config(str(registry_root), ["production"], versions={"production": "v2"})
    assert apps_by_name(cfg)["production"]["args"]["model_version"] == "v2"
    with pytest.raises(RegistryError, match="no version v9"):
        serve_config.build_serve_config(str(registry_root), ["production"], versions={"production": "v9"})
    with pytest.raises(ValueError, match="canary_weight"):
        serve_config.build_serve_config(str(registry_root), canary_weight=2)
    with pytest.raises(ValueError, match="unknown environment"):
        serve_config.build_serve_config(str(registry_root), ["qa"])
    with pytest.raises(ValueError, match="needs a production model"):
        serve_config.build_serve_config(str(registry_root), ["staging"], public=True)


def test_schema_rejects_a_broken_config(registry_root):
    cfg = serve_config.build_serve_config(str(registry_root), ["production"])
    cfg["applications"][0]["deployments"][0]["max_surge_percent"] = 400
    with pytest.raises(ValueError):
        serve_config.validate(cfg)


def test_cli_uses_the_inventory_and_creates_a_key(registry_root, tmp_path, capsys):
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "group_vars" / "all" / "main.yml").write_text("chiops_environments: [canary, production]\n")
    out, key = tmp_path / "serve.yaml", tmp_path / "keys" / "token.key"
    rc = serve_config.main(
        [
            "--registry",
            str(registry_root),
            "--inventory",
            str(inv),
            "--token-key-file",
            str(key),
            "--canary-weight",
            "0.1",
            "--port",
            "18123",
            "-o",
            str(out),
        ]
    )
    assert rc == 0 and key.exists()
    cfg = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(cfg)
    assert [a["name"] for a in cfg["applications"]] == ["canary", "production", "public"]
    assert cfg["http_options"] == {"host": "127.0.0.1", "port": 18123}
    assert key.read_text() not in out.read_text()
    assert serve_config.main(["--registry", str(tmp_path / "missing"), "--environments", "production"]) == 2
    assert "no model to serve" in capsys.readouterr().err


def test_registry_reader_resolves_aliases(registry_root):
    reg = Registry(str(registry_root))
    assert reg.resolve("production") == "v1" and reg.resolve("v2") == "v2"
    assert reg.card("v1")["version"] == "v1" and reg.card("production")["version"] == "v1"
    images, labels = reg.test_split("v1")
    assert images.shape[1:] == (8, 8) and images.dtype == np.float32 and len(images) == len(labels)


def test_predictor_matches_the_exported_model(registry_root):
    reg = Registry(str(registry_root))
    images, labels = reg.test_split("v2")
    predictor = Predictor(str(registry_root), "canary")
    assert (
        predictor.version == "v2" and predictor.summary["accuracy"] == reg.card("v2")["metrics"]["accuracy"]
    )
    classes, confidences = predictor.predict(images)
    model = torch.jit.load(str(registry_root / "versions" / "v2" / "model.ts"))
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(images).reshape(-1, 1, 8, 8)), 1)
    assert classes == probs.argmax(1).tolist()
    assert np.allclose(confidences, probs.max(1).values.numpy(), atol=1e-6)
    assert np.mean(np.array(classes) == labels) == pytest.approx(reg.card("v2")["metrics"]["accuracy"])
