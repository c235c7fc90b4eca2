"""pipeline/signals.py against real sources: Prometheus (Debian's server, the committed rules file) evaluating
the drift rule over series a real exporter serves, and `pipeline decide --prometheus` reading it."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

import monitoring.generate as monitoring
from pipeline import signals
from pipeline.cli import main
from serving import metric_names as m
from tests.ports import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
COMMIT = "c" * 40
# Ten ink bins: the reference is uniform; live traffic puts 90 % of the images in the first five bins.
REFERENCE = [0.1] * 10
# 1000 images, TVD 0.5 * (|0.18-0.1|*5 + |0.02-0.1|*5) = 0.4: clear of the 0.25 threshold, so the decision
# does not hang on extrapolation noise at the boundary
LIVE = [180] * 5 + [20] * 5


def wait_for(url: str, expr: str, series: int, log, positive: bool = False) -> None:
    """Until `expr` has `series` series (with `positive`, every value > 0), up to 90 s."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            result = httpx.get(f"{url}/api/v1/query", params={"query": expr}).json()["data"]["result"]
        except (httpx.HTTPError, ValueError):  # not up yet, or a starting server's non-JSON answer
            result = []
        if len(result) == series and not (positive and any(float(r["value"][1]) <= 0 for r in result)):
            return
        time.sleep(1)
    pytest.fail(f"{expr} has no {series} series after 90 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """Prometheus scraping an exporter of two versions' ink counters: v1 with 1000 images, v2 with 100."""
    tmp = tmp_path_factory.mktemp("prometheus")
    registry = CollectorRegistry()
    labels = [m.ENVIRONMENT, m.MODEL_VERSION, m.BIN]
    ink = Counter(m.INPUT_INK_TOTAL.removesuffix("_total"), "ink bins", labels, registry=registry)
    share = Gauge(m.INPUT_REFERENCE_SHARE, "reference shares", labels, registry=registry)
    exporter_port, port = free_port(), free_port()
    server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    for version in ("v1", "v2"):
        for b, ref in enumerate(REFERENCE):
            share.labels("production", version, str(b)).set(ref)
            ink.labels("production", version, str(b)).inc(0)
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{monitoring.RULES_PATH}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: chiops, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}\n"
    )
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}"]
    log = tmp / "prometheus.log"
    with log.open("w") as err:
        proc = subprocess.Popen([*argv, f"--web.listen-address=127.0.0.1:{port}"], stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        # The counters' zero must be scraped first: a series first seen at 150 has grown by nothing.
        wait_for(url, m.INPUT_INK_TOTAL, 20, log)
        for version, scale in (("v1", 1), ("v2", 10)):
            for b, count in enumerate(LIVE):
                ink.labels("production", version, str(b)).inc(count / scale)
        wait_for(url, monitoring.DRIFT, 2, log, positive=True)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.shutdown()


def test_live_drift_is_the_rule_value_of_the_version_production_serves(prometheus):
    drift = signals.live_drift(prometheus, version="v1")
    assert drift == pytest.approx(0.4, abs=0.02)


def test_too_few_images_is_no_measurement(prometheus):
    # v2 saw ~100 images: below the alert's floor of DRIFT_ALERT_MIN_IMAGES, so drift is "not measured"
    assert monitoring.DRIFT_ALERT_MIN_IMAGES > 100
    assert signals.live_drift(prometheus, version="v2") is None
    assert signals.live_drift(prometheus, environment="canary") is None


def test_unreachable_prometheus_is_a_signal_error():
    with pytest.raises(signals.SignalError, match="unreachable"):
        signals.live_drift(f"http://127.0.0.1:{free_port()}")


def test_decide_reads_drift_from_prometheus(prometheus, capsys):
    # no version given (no registry): the highest value among production's versions with enough images
    code = main(["decide", "--prometheus", prometheus, "--code-commit", COMMIT, "--trained-commit", COMMIT])
    out = capsys.readouterr().out
    assert code == 0 and "input drift 0.4" in out and "drift" in out.splitlines()[0], out


def test_a_signal_given_twice_is_bad_usage(prometheus, capsys):
    code = main(["decide", "--prometheus", prometheus, "--drift", "0.1", "--code-commit", COMMIT])
    assert code == 2 and "give each signal once" in capsys.readouterr().err
