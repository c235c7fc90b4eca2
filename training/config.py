"""Training configuration: one YAML file per model recipe, checked against a schema before any work."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from training.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {
        "source": "sklearn-digits",
        "duplicates": "fail",
        "max_class_imbalance": 3.0,
        "min_per_class": 10,
    },
    "split": {"seed": 0, "val": 0.15, "test": 0.2},
    "noise": {"kind": "none", "rate": 0.0, "pairs": {}},
    "model": {"channels": [16, 32], "hidden": 64, "dropout": 0.1},
    "train": {
        "device": "auto",
        "epochs": 60,
        "batch_size": 64,
        "lr": 0.003,
        "weight_decay": 0.0001,
        "patience": 8,
        "threads": 1,
        "augment_shift": 0,
    },
    "evaluate": {"target_precision": 0.99, "ece_bins": 15, "latency_batch": 64, "latency_repeats": 30},
    "gate": {"min_accuracy": 0.97, "max_drop": 0.01},
}

_NUM = {"type": "number"}
_PROB = {"type": "number", "minimum": 0, "maximum": 1}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "description": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "source": {"type": "string", "minLength": 1},
                "duplicates": {"enum": ["fail", "drop"]},
                "max_class_imbalance": {"type": "number", "minimum": 1},
                "min_per_class": {"type": "integer", "minimum": 2},
                # a feedback snapshot (training/feedback_data.py) added to the training split
                "feedback": {"type": "string", "minLength": 1},
            },
        },
        "split": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "seed": {"type": "integer", "minimum": 0},
                "val": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
                "test": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
            },
        },
        "noise": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["none", "uniform", "pairs"]},
                "rate": _PROB,
                "pairs": {
                    "type": "object",
                    "patternProperties": {"^[0-9]$": {"type": "integer", "minimum": 0, "maximum": 9}},
                    "additionalProperties": False,
                },
            },
        },
        "model": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "channels": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1, "maximum": 256},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "hidden": {"type": "integer", "minimum": 1, "maximum": 4096},
                "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            },
        },
        "train": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "device": {"enum": ["auto", "cpu", "cuda"]},
                "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
                "batch_size": {"type": "integer", "minimum": 1},
                "lr": {"type": "number", "exclusiveMinimum": 0},
                "weight_decay": {"type": "number", "minimum": 0},
                "patience": {"type": "integer", "minimum": 1},
                "threads": {"type": "integer", "minimum": 1},
                "augment_shift": {"type": "integer", "minimum": 0, "maximum": 2},
            },
        },
        "evaluate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "target_precision": _PROB,
                "ece_bins": {"type": "integer", "minimum": 1},
                "latency_batch": {"type": "integer", "minimum": 1},
                "latency_repeats": {"type": "integer", "minimum": 1},
            },
        },
        "gate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"min_accuracy": _PROB, "max_drop": _NUM},
        },
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["train.epochs=5", "seed=1"] into a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects key=value (e.g. train.epochs=5), got {pair!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def validate_config(raw: Any, origin: str = "config") -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(raw).__name__}")
    noise = raw.get("noise")
    if isinstance(noise, dict) and isinstance(noise.get("pairs"), dict):
        # YAML reads `3: 8` with an integer key; the schema (like JSON) names keys as strings
        noise["pairs"] = {str(k): v for k, v in noise["pairs"].items()}
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}" for e in errors]
        raise ConfigError(f"{origin} is invalid:\n" + "\n".join(lines))
    config = _merge(DEFAULTS, raw)
    if config["split"]["val"] + config["split"]["test"] >= 0.8:
        raise ConfigError(f"{origin}: split.val + split.test must leave at least 20% for training")
    if config["noise"]["kind"] == "pairs" and not config["noise"]["pairs"]:
        raise ConfigError(f"{origin}: noise.kind 'pairs' needs noise.pairs (source digit: target digit)")
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read, merge with defaults and validate a config file; ConfigError (exit 2) says what is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if overrides:
        raw = _merge(raw if isinstance(raw, dict) else {}, parse_overrides(overrides))
    config = validate_config(raw, str(path))
    config["_path"] = str(path)
    return config
