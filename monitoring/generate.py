"""Prometheus recording/alert rules and the Grafana dashboard of the service, generated from the metric names.

`python -m monitoring.generate` rewrites monitoring/chiops-rules.yml (the controller's Prometheus),
deploy/platform/30-chiops-rules.yaml (the same groups as a PrometheusRule, for the cluster's
kube-prometheus-stack) and monitoring/chiops-dashboard.json; a test fails when the committed files differ from
what this module generates, so nobody edits PromQL by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

from pipeline.policy import Policy
from rollout import state
from serving import metric_names as m

ROOT = Path(__file__).resolve().parents[1]
RULES_PATH = ROOT / "monitoring" / "chiops-rules.yml"
DASHBOARD_PATH = ROOT / "monitoring" / "chiops-dashboard.json"
PLATFORM_RULES_PATH = ROOT / "deploy" / "platform" / "30-chiops-rules.yaml"

# chi_scripts `status --metrics-file` (docs/chi_scripts.md): the lease's end; the alert subtracts time().
LEASE_END = "chiops_lease_end_timestamp_seconds"

# Service-level objectives the alerts burn against.
ERROR_SLO = 0.995  # 99.5 % of /predict answers are not 5xx
LATENCY_SLO_MS = 500  # a histogram boundary of serving/metrics.py, so the good-ratio is exact
# The `le` label as it is stored: Ray exports every boundary as str(float), and Prometheus 3 normalises to the
# same form, so le="500" matches no series (found by tests/rollout/test_gates_live.py, 2026-12-02).
LATENCY_SLO_LE = str(float(LATENCY_SLO_MS))
LATENCY_SLO = 0.99  # 99 % of /predict answers within LATENCY_SLO_MS
# Multi-window burn rate (fast burn: 2 % of a 30-day budget in 1 h).
FAST_BURN = 14.4
ACCURACY_ALERT_BELOW = 0.9
ACCURACY_ALERT_MIN_FEEDBACK = 100
LEASE_ALERT_SECONDS = 2 * 3600
# Input drift (serving/drift.py): the pipeline's retrain threshold, judged once 30 m hold enough images.
DRIFT_ALERT_ABOVE = Policy().drift_threshold
DRIFT_ALERT_MIN_IMAGES = 500

BY = f"{m.ENVIRONMENT}, {m.MODEL_VERSION}"
PREDICT = f'{m.ROUTE}="/predict"'

# Recording rule names (level:metric:operations).
ERROR_RATIO = "chiops:predict_error_ratio:rate{w}"
SLOW_RATIO = "chiops:predict_slow_ratio:rate{w}"
P99 = "chiops:predict_latency_ms:p99_rate5m"
ACCURACY = "chiops:online_accuracy:ratio_30m"
FEEDBACK_30M = "chiops:feedback:increase_30m"
IMAGES_30M = "chiops:input_images:increase_30m"
DRIFT = "chiops:input_drift:tvd_30m"
RECORDED = [ERROR_RATIO.format(w=w) for w in ("5m", "1h")] + [SLOW_RATIO.format(w=w) for w in ("5m", "1h")]
RECORDED += [P99, ACCURACY, FEEDBACK_30M, IMAGES_30M, DRIFT]


def _error_ratio(window: str) -> str:
    return (
        f'sum by ({BY}) (\n  rate({m.REQUESTS_TOTAL}{{{PREDICT},{m.STATUS}=~"5.."}}[{window}])\n)\n'
        f"/\nsum by ({BY}) (rate({m.REQUESTS_TOTAL}{{{PREDICT}}}[{window}]))"
    )


def _slow_ratio(window: str) -> str:
    return (
        f"1 - sum by ({BY}) (\n"
        f'  rate({m.REQUEST_LATENCY_MS_BUCKET}{{{PREDICT},le="{LATENCY_SLO_LE}"}}[{window}])\n)\n'
        f"/\nsum by ({BY}) (rate({m.REQUEST_LATENCY_MS_COUNT}{{{PREDICT}}}[{window}]))"
    )


def _drift() -> str:
    """Total variation distance between the live ink-bin shares over 30 m and the served model's reference.

    A bin with no live image has no series: it counts with the reference's whole share (the `or`); a
    version that saw no image in the window gets no value rather than a distance of one half.
    """
    live = f"sum by ({BY}, {m.BIN}) (increase({m.INPUT_INK_TOTAL}[30m]))"
    reference = f"max by ({BY}, {m.BIN}) ({m.INPUT_REFERENCE_SHARE})"
    return (
        f"0.5 * sum by ({BY}) (\n"
        f"  (\n"
        f"    abs(\n"
        f"      {live}\n"
        f"      / ignoring ({m.BIN}) group_left {IMAGES_30M}\n"
        f"      - {reference}\n"
        f"    )\n"
        f"    or {reference}\n"
        f"  )\n"
        f"  and on ({BY}) ({IMAGES_30M} > 0)\n"
        f")"
    )


def rules() -> dict:
    recording = [{"record": ERROR_RATIO.format(w=w), "expr": _error_ratio(w)} for w in ("5m", "1h")]
    recording += [{"record": SLOW_RATIO.format(w=w), "expr": _slow_ratio(w)} for w in ("5m", "1h")]
    recording += [
        {
            "record": P99,
            "expr": (
                "histogram_quantile(\n  0.99,\n"
                f"  sum by ({BY}, le) (rate({m.REQUEST_LATENCY_MS_BUCKET}{{{PREDICT}}}[5m]))\n)"
            ),
        },
        {"record": FEEDBACK_30M, "expr": f"sum by ({BY}) (increase({m.FEEDBACK_TOTAL}[30m]))"},
        {
            "record": ACCURACY,
            "expr": f"(\n  sum by ({BY}) (increase({m.FEEDBACK_CORRECT_TOTAL}[30m]))\n"
            f"  or {FEEDBACK_30M} * 0\n)\n"
            f"/\n{FEEDBACK_30M}",
        },
        {"record": IMAGES_30M, "expr": f"sum by ({BY}) (increase({m.INPUT_INK_TOTAL}[30m]))"},
        {"record": DRIFT, "expr": _drift()},
    ]
    error_budget = round(1 - ERROR_SLO, 6)
    latency_budget = round(1 - LATENCY_SLO, 6)
    alerts = [
        {
            "alert": "ChiopsErrorBudgetBurn",
            "expr": f"{ERROR_RATIO.format(w='5m')} > {FAST_BURN} * {error_budget}\n"
            f"and\n{ERROR_RATIO.format(w='1h')} > {FAST_BURN} * {error_budget}",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.environment }} {{ $labels.model_version }} "
                "burns its error budget fast",
                "description": f"5xx ratio of /predict is above {FAST_BURN}x the {ERROR_SLO:.1%} SLO budget "
                "over both 5 m and 1 h (now {{ $value | humanizePercentage }}).",
            },
        },
        {
            "alert": "ChiopsLatencyBudgetBurn",
            "expr": f"{SLOW_RATIO.format(w='5m')} > {FAST_BURN} * {latency_budget}\n"
            f"and\n{SLOW_RATIO.format(w='1h')} > {FAST_BURN} * {latency_budget}",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.environment }} {{ $labels.model_version }} is too slow too often",
                "description": f"Share of /predict answers slower than {LATENCY_SLO_MS} ms "
                f"is above {FAST_BURN}x the {LATENCY_SLO:.0%} SLO budget over both 5 m and 1 h.",
            },
        },
        {
            "alert": "ChiopsOnlineAccuracyDrop",
            "expr": f"{ACCURACY} < {ACCURACY_ALERT_BELOW}\nand\n"
            f"{FEEDBACK_30M} >= {ACCURACY_ALERT_MIN_FEEDBACK}",
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.environment }} {{ $labels.model_version }} "
                "accuracy on feedback dropped",
                "description": f"Accuracy on ground-truth feedback over 30 m is below {ACCURACY_ALERT_BELOW} "
                "(now {{ $value | humanizePercentage }}).",
            },
        },
        {
            "alert": "ChiopsInputDrift",
            "expr": f"{DRIFT} > {DRIFT_ALERT_ABOVE}\nand\n{IMAGES_30M} >= {DRIFT_ALERT_MIN_IMAGES}",
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.environment }} {{ $labels.model_version }} "
                "sees inputs unlike its training data",
                "description": f"Ink distribution of live images over 30 m is more than {DRIFT_ALERT_ABOVE} "
                '(total variation) from the model\'s test split (now {{ $value | printf "%.2f" }}): '
                "`chiops pipeline decide --drift` takes this value.",
            },
        },
        {
            "alert": "ChiopsLeaseEndingSoon",
            "expr": f"{LEASE_END} - time() < {LEASE_ALERT_SECONDS}",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Chameleon lease {{ $labels.lease }} ({{ $labels.environment }}) ends within 2 h",
                "description": "{{ $value | humanizeDuration }} left: "
                "extend the lease or save the artifacts.",
            },
        },
        {
            "alert": "ChiopsRolledBack",
            "expr": f'{state.METRIC}{{stage="rolled_back"}} == 1',
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Rollout of {{ $labels.model_version }} was rolled back by its gates",
                "description": "See reports/ for the gate that failed and its measured values.",
            },
        },
    ]
    return {
        "groups": [
            {"name": "chiops.recording", "interval": "15s", "rules": recording},
            {"name": "chiops.alerts", "rules": alerts},
        ]
    }


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int) -> dict:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard() -> dict:
    legend = "{{environment}} {{model_version}}"
    specs = [
        (
            "Requests per second (/predict)",
            [(f"sum by ({BY}) (rate({m.REQUESTS_TOTAL}{{{PREDICT}}}[1m]))", legend)],
            "reqps",
        ),
        ("Error ratio (5xx of /predict)", [(ERROR_RATIO.format(w="5m"), legend)], "percentunit"),
        ("p99 latency (/predict)", [(P99, legend)], "ms"),
        ("Online accuracy (feedback, 30 m)", [(ACCURACY, legend)], "percentunit"),
        (
            "Predicted classes",
            [
                (
                    f"sum by ({m.ENVIRONMENT}, {m.PREDICTED_CLASS}) (rate({m.PREDICTIONS_TOTAL}[5m]))",
                    "{{environment}} class {{predicted_class}}",
                )
            ],
            "short",
        ),
        (
            "Mean confidence",
            [
                (
                    f"sum by ({BY}) (rate({m.CONFIDENCE_SUM}[5m])) / "
                    f"sum by ({BY}) (rate({m.CONFIDENCE_COUNT}[5m]))",
                    legend,
                )
            ],
            "percentunit",
        ),
        (
            "Rollout stage and canary weight",
            [(f"{state.METRIC} == 1", "{{model_version}} {{stage}}"), (state.WEIGHT_METRIC, "canary weight")],
            "short",
        ),
        (
            "Client-side requests by outcome",
            [(f"sum by ({m.OUTCOME}) (rate({m.CLIENT_REQUESTS_TOTAL}[1m]))", "{{outcome}}")],
            "reqps",
        ),
        (
            "Client-side p99 latency",
            [(f"histogram_quantile(0.99, sum by (le) (rate({m.CLIENT_LATENCY_SECONDS}_bucket[1m])))", "p99")],
            "s",
        ),
        ("Chameleon lease time left", [(f"{LEASE_END} - time()", "{{environment}} {{lease}}")], "s"),
    ]
    panels = [_panel(i + 1, t, e, u, 12 * (i % 2), 8 * (i // 2)) for i, (t, e, u) in enumerate(specs)]
    return {
        "title": "ChiOps model service",
        "uid": "chiops-service",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-30m", "to": "now"},
        "refresh": "10s",
        "tags": ["chiops"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
            ]
        },
        "panels": panels,
    }


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_BRACES = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names_in(expr: str) -> set[str]:
    """Metric names an expression reads (labels, functions, keywords and numbers removed)."""
    text = _STRING.sub("", expr)
    text = _GROUPING.sub("", text)
    text = _BRACES.sub("", text)
    text = _RANGE.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def dashboard_exprs(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


class _BlockDumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # yamllint wants block sequences indented under their key.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render_rules() -> str:
    header = "# Generated by `python -m monitoring.generate` from serving/metric_names.py; do not edit.\n"
    return header + yaml.dump(rules(), Dumper=_BlockDumper, sort_keys=False, width=100)


def prometheus_rule() -> dict:
    """The rules as the Prometheus operator loads them; kube-prometheus-stack selects rules from every
    namespace (ruleSelectorNilUsesHelmValues: false in 10-kube-prometheus-stack.yaml)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "chiops",
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/part-of": "chiops-platform"},
            "annotations": {
                "argocd.argoproj.io/sync-wave": "0",
                # the CRD arrives with kube-prometheus-stack in an earlier wave of the same first sync
                "argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true",
            },
        },
        "spec": rules(),
    }


def render_platform_rules() -> str:
    header = (
        "# Generated by `python -m monitoring.generate` from serving/metric_names.py; do not edit.\n"
        "# The groups of monitoring/chiops-rules.yml, for the cluster's Prometheus operator.\n"
    )
    return header + yaml.dump(prometheus_rule(), Dumper=_BlockDumper, sort_keys=False, width=100)


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    RULES_PATH.parent.mkdir(parents=True, exist_ok=True)
    RULES_PATH.write_text(render_rules())
    PLATFORM_RULES_PATH.write_text(render_platform_rules())
    DASHBOARD_PATH.write_text(render_dashboard())
    print(RULES_PATH, PLATFORM_RULES_PATH, DASHBOARD_PATH, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
