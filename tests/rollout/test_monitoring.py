"""Alert/recording rules (promtool) and the Grafana dashboard of the service."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest
import yaml

from monitoring import generate as monitoring
from rollout import state
from serving import metric_names as m

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_committed_files_are_what_the_generator_writes():
    assert monitoring.RULES_PATH.read_text() == monitoring.render_rules(), "run python -m monitoring.generate"
    assert monitoring.DASHBOARD_PATH.read_text() == monitoring.render_dashboard()
    assert monitoring.PLATFORM_RULES_PATH.read_text() == monitoring.render_platform_rules()


def test_the_cluster_loads_the_same_rules_promtool_checks(tmp_path):
    # The cluster's PrometheusRule and the controller's rule file are one set of groups, so the promtool and
    # alert tests below hold for both; the spec alone is a rule file promtool accepts.
    (rule,) = yaml.safe_load_all(monitoring.PLATFORM_RULES_PATH.read_text())
    assert rule["spec"] == yaml.safe_load(monitoring.RULES_PATH.read_text())
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    out = subprocess.run([PROMTOOL, "check", "rules", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS: 15 rules found" in out.stdout, out.stdout + out.stderr


def test_promtool_accepts_the_rules():
    out = subprocess.run(
        [PROMTOOL, "check", "rules", str(monitoring.RULES_PATH)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 15 rules found" in out.stdout


ALERT_TESTS = textwrap.dedent(
    """
    rule_files: [{rules}]
    evaluation_interval: 15s
    tests:
      - interval: 15s
        input_series:
          # The lease's end, never rewritten: the alert must fire from Prometheus' clock alone.
          - series: 'chiops_lease_end_timestamp_seconds{{environment="production",lease="chiops-prod"}}'
            values: '7500x40'
          - series: 'ray_chiops_requests_total{{environment="canary",model_version="v3",\
route="/predict",status="200"}}'
            values: '0+60x400'
          - series: 'ray_chiops_requests_total{{environment="canary",model_version="v3",\
route="/predict",status="503"}}'
            values: '0+20x400'
          - series: 'ray_chiops_requests_total{{environment="production",model_version="v1",\
route="/predict",status="200"}}'
            values: '0+60x400'
          - series: 'ray_chiops_feedback_total{{environment="canary",model_version="v3"}}'
            values: '0+10x400'
          - series: 'ray_chiops_feedback_correct_total{{environment="canary",model_version="v3"}}'
            values: '0+8x400'
          - series: 'ray_chiops_feedback_total{{environment="production",model_version="v1"}}'
            values: '0+10x400'
          - series: 'ray_chiops_feedback_correct_total{{environment="production",model_version="v1"}}'
            values: '0+10x400'
{drift_series}
        alert_rule_test:
          - eval_time: 4m
            alertname: ChiopsLeaseEndingSoon
            exp_alerts: []
          - eval_time: 6m
            alertname: ChiopsLeaseEndingSoon
            exp_alerts:
              - exp_labels: {{severity: page, environment: production, lease: chiops-prod}}
                exp_annotations:
                  summary: Chameleon lease chiops-prod (production) ends within 2 h
                  description: '1h 59m 0s left: extend the lease or save the artifacts.'
          - eval_time: 20m
            alertname: ChiopsErrorBudgetBurn
            exp_alerts:
              - exp_labels: {{severity: page, environment: canary, model_version: v3}}
                exp_annotations:
                  summary: canary v3 burns its error budget fast
                  description: 5xx ratio of /predict is above 14.4x the 99.5% SLO budget over both 5 m \
and 1 h (now 25%).
          - eval_time: 40m
            alertname: ChiopsOnlineAccuracyDrop
            exp_alerts:
              - exp_labels: {{severity: ticket, environment: canary, model_version: v3}}
                exp_annotations:
                  summary: canary v3 accuracy on feedback dropped
                  description: Accuracy on ground-truth feedback over 30 m is below 0.9 (now 80%).
          - eval_time: 40m
            alertname: ChiopsInputDrift
            exp_alerts:
              - exp_labels: {{severity: ticket, environment: production, model_version: v1}}
                exp_annotations:
                  summary: production v1 sees inputs unlike its training data
                  description: 'Ink distribution of live images over 30 m is more than 0.25 \
(total variation) from the model''s test split (now 0.80): `chiops pipeline decide --drift` takes this value.'
        promql_expr_test:
          # The canary's images are spread like its reference: no drift. Staging saw no image: no value.
          - expr: chiops:input_drift:tvd_30m{{environment!="production"}}
            eval_time: 40m
            exp_samples:
              - labels: 'chiops:input_drift:tvd_30m{{environment="canary",model_version="v3"}}'
                value: 0
    """
)


def drift_series() -> str:
    """Every served version exports its reference shares (a tenth per bin here); production v1's live images
    all fall in bins 0 and 1 (TVD 0.8), canary v3's are spread evenly, staging v4 gets no traffic."""
    lines = []
    for env, version, live in (
        ("production", "v1", {0: 5, 1: 5}),
        ("canary", "v3", dict.fromkeys(range(10), 1)),
        ("staging", "v4", {}),
    ):
        for b in range(10):
            labels = f'environment="{env}",model_version="{version}",bin="{b}"'
            lines.append(f"- series: '{m.INPUT_REFERENCE_SHARE}{{{labels}}}'\n  values: '0.1+0x400'")
            if b in live:
                lines.append(f"- series: '{m.INPUT_INK_TOTAL}{{{labels}}}'\n  values: '0+{live[b]}x400'")
    return textwrap.indent("\n".join(lines), " " * 10)


def test_alerts_fire_on_the_conditions_they_name(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(monitoring.render_rules())
    tests = tmp_path / "tests.yml"
    tests.write_text(ALERT_TESTS.format(rules=rules, drift_series=drift_series()))
    out = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def known_metric_names() -> set[str]:
    exported = {
        m.REQUESTS_TOTAL,
        m.PREDICTIONS_TOTAL,
        m.FEEDBACK_TOTAL,
        m.FEEDBACK_CORRECT_TOTAL,
        m.CLIENT_REQUESTS_TOTAL,
        m.INPUT_INK_TOTAL,
        m.INPUT_REFERENCE_SHARE,
    }
    for histogram in (m.REQUEST_LATENCY_MS, m.CONFIDENCE, m.CLIENT_LATENCY_SECONDS):
        exported |= {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}
    recorded = {r["record"] for g in monitoring.rules()["groups"] for r in g["rules"] if "record" in r}
    return exported | recorded | {state.METRIC, state.WEIGHT_METRIC, state.TIME_METRIC, monitoring.LEASE_END}


def test_dashboard_parses_and_reads_only_metrics_the_service_exports():
    board = json.loads(monitoring.DASHBOARD_PATH.read_text())
    assert board["panels"] and all(p["targets"] for p in board["panels"])
    names = set()
    for expr in monitoring.dashboard_exprs(board):
        found = monitoring.metric_names_in(expr)
        assert found, f"no metric in {expr!r}"
        names |= found
    assert names - known_metric_names() == set()
    # the dashboard covers every family of the service, the rollout state and the lease
    assert {
        m.REQUESTS_TOTAL,
        m.PREDICTIONS_TOTAL,
        m.CLIENT_REQUESTS_TOTAL,
        state.METRIC,
        monitoring.LEASE_END,
    } <= names


def test_rules_read_only_known_metrics():
    for group in yaml.safe_load(monitoring.RULES_PATH.read_text())["groups"]:
        for rule in group["rules"]:
            assert monitoring.metric_names_in(rule["expr"]) <= known_metric_names(), rule


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{x="y"}[5m]))', {"a_bucket"}),
        ("b:rec:rate5m > 14.4 * 0.005 and c_total offset 5m", {"b:rec:rate5m", "c_total"}),
        ('histogram_quantile(0.99, sum by (environment, le) (rate(d{route="/p"}[1m])))', {"d"}),
        ("e / ignoring (bin) group_left\n f:rec - on (bin) group_right g", {"e", "f:rec", "g"}),
    ],
)
def test_metric_name_extraction(expr, names):
    assert monitoring.metric_names_in(expr) == names
