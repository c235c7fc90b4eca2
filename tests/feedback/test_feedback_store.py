"""The feedback store on SQLite and on a real PostgreSQL server: one record per prediction id under concurrent
writers, data kept across a store restart, a store that is down → /feedback 503 while /predict answers."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import shutil

import numpy as np
import pytest

from serving.feedback import handle_feedback
from serving.feedback_store import StoreUnavailable, image_digest, new_feedback, open_store
from serving.metrics import ServiceMetrics
from serving.schema import Limits
from serving.tokens import TokenSigner
from tests.feedback.postgres import PostgresServer

KEY = b"feedback-store-test-key-0123456789"
SIGNER = TokenSigner(KEY)
WRITERS = 4
IDS = 40


def image(i: int) -> np.ndarray:
    return ((np.arange(64).reshape(8, 8) + i) % 17).astype(np.float32)


def token(i: int, predicted: int = 3) -> str:
    return SIGNER.sign("production", "v1", predicted, image_digest=image_digest(image(i)))


def body(tok: str, label: int, img: np.ndarray | None) -> bytes:
    data = {"prediction_id": tok, "label": label}
    if img is not None:
        data["image"] = img.tolist()
    return json.dumps(data).encode()


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().init().start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/feedback.db"
    pg = request.getfixturevalue("postgres")
    # a database of its own per test, so the tests do not see each other's rows
    name = f"t{random.randrange(10**9)}"
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


def _write_all(url: str, tokens: list[str], seed: int, out) -> None:
    store = open_store(url)
    order = list(range(len(tokens)))
    random.Random(seed).shuffle(order)
    new = []
    for i in order:
        prediction = SIGNER.verify(tokens[i])
        if store.add(new_feedback(prediction, tokens[i], i % 10, image(i))):
            new.append(i)
    out.put(new)


def test_each_prediction_id_is_stored_once_under_concurrent_writers(store_url):
    """Several processes (as several replicas would) send the same ids in different orders at once."""
    tokens = [token(i) for i in range(IDS)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_write_all, args=(store_url, tokens, seed, out)) for seed in range(WRITERS)]
    for p in procs:
        p.start()
    reported = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    new_ids = sorted(i for r in reported for i in r)
    # every id was new to exactly one writer: the metric would count it once
    assert new_ids == list(range(IDS))
    records = open_store(store_url).records()
    assert sorted(r.prediction_id for r in records) == sorted(tokens)
    by_id = {r.prediction_id: r for r in records}
    for i, tok in enumerate(tokens):
        r = by_id[tok]
        assert (r.label, r.predicted_class, r.environment, r.model_version) == (i % 10, 3, "production", "v1")
        np.testing.assert_array_equal(r.pixels(), image(i))


def test_feedback_handler_keeps_the_image_and_counts_a_replay_once(store_url):
    store, metrics = open_store(store_url), ServiceMetrics("production")
    tok = token(7, predicted=5)

    status, payload = handle_feedback(body(tok, 5, image(7)), Limits(), SIGNER, metrics, store)
    assert (status, payload["correct"], payload["duplicate"]) == (200, True, False)
    status, payload = handle_feedback(body(tok, 5, image(7)), Limits(), SIGNER, metrics, store)
    assert (status, payload["duplicate"]) == (200, True)

    # the store holds what /predict saw, nothing a client may swap in
    status, payload = handle_feedback(body(token(8), 1, image(9)), Limits(), SIGNER, metrics, store)
    assert status == 422 and "not the image" in payload["error"]
    status, payload = handle_feedback(body(token(8), 1, None), Limits(), SIGNER, metrics, store)
    assert status == 422 and "image" in payload["error"]
    unsigned = SIGNER.sign("production", "v1", 1)  # a token without an image digest
    status, _ = handle_feedback(body(unsigned, 1, image(1)), Limits(), SIGNER, metrics, store)
    assert status == 422

    records = store.records()
    assert [r.prediction_id for r in records] == [tok]
    np.testing.assert_array_equal(records[0].pixels(), image(7))


def test_without_a_store_feedback_is_counted_as_before():
    status, payload = handle_feedback(body(token(1), 3, None), Limits(), SIGNER, ServiceMetrics("production"))
    assert (status, payload["correct"]) == (200, True)


def test_store_urls_are_checked():
    assert open_store(None) is None and open_store("") is None
    for bad in ("mysql://x/y", "sqlite://relative.db", "postgresql://u:secret@127.0.0.1/db"):
        with pytest.raises(ValueError):
            open_store(bad)


@pytest.fixture(scope="module")
def endpoint_model(tmp_path_factory):
    """(predict, info) of a real registry version's TorchScript model, as ModelEndpoint takes them."""
    from serving.predictor import Predictor
    from tests.trained_registry import build_registry

    root = build_registry(
        tmp_path_factory.mktemp("registry"), versions=((0, 1),), aliases={"production": "v1"}
    )
    predictor = Predictor(str(root), "v1")

    async def predict(images):
        classes, confidences = predictor.predict(images)
        return {"model_version": predictor.version, "classes": classes, "confidences": confidences}

    async def info():
        return {"model_version": predictor.version}

    return predict, info


def _predict_then_feedback(model, store) -> tuple[int, int, dict]:
    from serving.endpoint import ModelEndpoint

    endpoint = ModelEndpoint(
        "production", "v1", Limits(), SIGNER, ServiceMetrics("production"), *model, store
    )
    img = image(3)

    async def go():
        p_status, p_payload = await endpoint.predict(json.dumps({"images": [img.tolist()]}).encode())
        assert p_status == 200, p_payload
        tok = p_payload["predictions"][0]["prediction_id"]
        f_status, f_payload = await endpoint.feedback(body(tok, 4, img))
        return p_status, f_status, f_payload

    return asyncio.run(go())


def test_sqlite_store_gone_predict_answers_feedback_503(endpoint_model, tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    store = open_store(f"sqlite:///{folder}/feedback.db")
    assert _predict_then_feedback(endpoint_model, store)[:2] == (200, 200)
    shutil.rmtree(folder)  # the volume is gone
    p_status, f_status, payload = _predict_then_feedback(endpoint_model, store)
    assert (p_status, f_status) == (200, 503) and "retry" in payload["error"]


def test_postgres_down_then_restarted_keeps_its_data(endpoint_model):
    server = PostgresServer().init().start()
    try:
        store = open_store(server.url, timeout_s=1.0)
        assert _predict_then_feedback(endpoint_model, store)[:2] == (200, 200)
        server.stop()
        p_status, f_status, payload = _predict_then_feedback(endpoint_model, store)
        assert (p_status, f_status) == (200, 503) and "retry" in payload["error"]
        with pytest.raises(StoreUnavailable):
            store.records()
        server.start()
        # the same store object reconnects; the row written before the restart is still there
        assert _predict_then_feedback(endpoint_model, store)[:2] == (200, 200)
        assert len(store.records()) == 2
        assert len(open_store(server.url).records()) == 2
    finally:
        server.remove()


def test_sqlite_store_follows_its_file_not_the_open_connection(tmp_path):
    # The store keeps its connection open between calls; a database file removed under it (a volume wiped,
    # an operator's rm) must not swallow the next writes into the unlinked inode, where no reader finds them.
    path = tmp_path / "feedback.db"
    store = open_store(f"sqlite:///{path}")
    t1, t2 = token(1), token(2)
    first = new_feedback(SIGNER.verify(t1), t1, 3, image(1))
    assert store.add(first)
    for leftover in tmp_path.glob("feedback.db*"):
        leftover.unlink()
    second = new_feedback(SIGNER.verify(t2), t2, 3, image(2))
    assert store.add(second)
    assert [r.prediction_id for r in open_store(f"sqlite:///{path}").records()] == [t2]
