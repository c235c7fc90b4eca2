"""Every endpoint of an environment app and of the public router, fed any body: a 4xx with a message, never
a 5xx, and no replica restarted (issue 15.1). Runs against the session's live service
(tests/serving/conftest.py).
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]

ROUTES = ("/predict", "/feedback", "/healthz", "/version", "/nope", "/predict/extra", "/")
PREFIXES = ("", "/production", "/canary")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# prediction_ids that are almost tokens: dots, base64 alphabets, any Unicode, very long, non-strings
PREDICTION_IDS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="abcAB019-_.=", max_size=60),
    st.tuples(st.text(max_size=30), st.text(max_size=30)).map(".".join),
    st.text(min_size=500, max_size=700),
    ANY_JSON,
)
FEEDBACK_SHAPED = st.fixed_dictionaries({"prediction_id": PREDICTION_IDS, "label": ANY_JSON})
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    FEEDBACK_SHAPED.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.just("images"), ANY_JSON).map(lambda v: json.dumps(v).encode()),
)


def _answer_is_a_refusal_or_an_answer(r) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["error"], r.text


@pytest.fixture(scope="module")
def replicas_before(service):
    return service.replica_pids()


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    prefix=st.sampled_from(PREFIXES),
    route=st.sampled_from(ROUTES),
    method=st.sampled_from(METHODS),
    body=BODIES,
)
def test_any_body_on_any_endpoint_is_never_a_5xx(service, replicas_before, prefix, route, method, body):
    r = service.client.request(method, prefix + route, content=body)
    _answer_is_a_refusal_or_an_answer(r)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(prefix=st.sampled_from(("", "/production")), body=FEEDBACK_SHAPED)
def test_malformed_prediction_ids_are_refused_with_a_4xx(service, replicas_before, prefix, body):
    r = service.client.post(prefix + "/feedback", content=json.dumps(body).encode())
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert r.json()["error"]


def test_unknown_paths_and_methods_say_what_is_wrong(service):
    for method, path, status in (
        ("GET", "/predict", 405),
        ("PUT", "/production/feedback", 405),
        ("DELETE", "/version", 405),
        ("GET", "/nope", 404),
        ("POST", "/production/nope", 404),
    ):
        r = service.client.request(method, path)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        assert path.rsplit("/", 1)[-1] in r.json()["error"]


def test_no_replica_restarted_by_the_fuzzing(service, replicas_before):
    assert service.replica_pids() == replicas_before  # same PIDs, same NumRestarts
