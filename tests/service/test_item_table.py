"""Candidates by id: rows come from the store's item table, and give what the same rows sent inline give."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.item_table import (
    ItemTableError,
    active_items_version,
    load_item_table,
    write_item_table,
)
from contracts.signing import DEMO_KEY_DIR
from contracts.store import active_version, read_manifest
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import wait_for_stream
from tests.service.first_response import decision_of, first_answer
from tests.versions import private_store

JSON = "application/json"


def by_id_body(store: Path, n: int = 300, k: int = 10, seed: int = 0) -> dict:
    table = load_item_table(store, active_items_version(store) or "")
    rng = np.random.default_rng(seed)
    ids = [table.ids[i] for i in rng.choice(len(table.ids), size=n, replace=False)]
    widths = read_manifest(store / "demo" / active_version(store, "demo")).feature_schema

    return {
        "user": {"id": "u7", "features": rng.standard_normal(widths.user_dim).tolist()},
        "context": [0.0] * widths.context_dim,
        "candidates": {"ids": ids},
        "k": k,
    }


def inline_copy(store: Path, body: dict) -> dict:
    """The same request with the table's rows sent inline (float32 → JSON → float32 is exact)."""
    table = load_item_table(store, active_items_version(store) or "")
    rows = [table.rows[i] for i in body["candidates"]["ids"]]
    candidates = {
        "ids": body["candidates"]["ids"],
        "features": table.features[rows].astype(np.float64).tolist(),
        "predictions": table.predictions[rows].astype(np.float64).tolist(),
    }
    return {**body, "candidates": candidates}


def test_ids_only_gives_the_same_decision_as_the_same_rows_inline(settings: Settings, store: Path) -> None:
    body = by_id_body(store)
    by_id = first_answer(settings, "/v1/rank", json.dumps(body).encode(), JSON)
    inline = first_answer(settings, "/v1/rank", json.dumps(inline_copy(store, body)).encode(), JSON)
    assert by_id.status_code == 200, by_id.text
    assert inline.status_code == 200, inline.text
    assert decision_of(by_id.json()) == decision_of(inline.json())
    assert len(by_id.json()["items"]) == 10


def test_inline_predictions_with_table_features(settings: Settings, store: Path) -> None:
    """Per-user predictions sent beside ids: features come from the table, predictions from the body."""
    body = by_id_body(store)
    full = inline_copy(store, body)
    mixed = {**body, "candidates": {"ids": body["candidates"]["ids"], "predictions": full["candidates"]["predictions"]}}
    a = first_answer(settings, "/v1/rank", json.dumps(mixed).encode(), JSON)
    b = first_answer(settings, "/v1/rank", json.dumps(full).encode(), JSON)
    assert a.status_code == 200, a.text
    assert decision_of(a.json()) == decision_of(b.json())


def test_unknown_id_is_named(client: TestClient, store: Path) -> None:
    body = by_id_body(store, n=20)
    body["candidates"]["ids"][13] = "no-such-item"
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "candidates.ids[13]"
    assert "no-such-item" in response.json()["detail"]


def test_record_names_the_item_table(
    client: TestClient, store: Path, settings: Settings, redis_client: redis.Redis
) -> None:
    by_id = by_id_body(store, n=50)
    inline_body = inline_copy(store, by_id_body(store, n=50, seed=1))
    answers = [client.post("/v1/rank", json=by_id).json()]
    inline = client.post("/v1/rank", json=inline_body).json()
    entries = wait_for_stream(redis_client, settings.decision_stream, 2)
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    assert [r.request_id for r in records] == [answers[0]["request_id"], inline["request_id"]]
    table = load_item_table(store, active_items_version(store) or "")
    assert records[0].candidates.item_table == table.version
    # Candidates from the table are logged as its rows (4 bytes each), not as their ids; the table resolves them.
    assert records[0].candidates.ids == [] and records[0].candidates.count == 50
    assert decision_record.candidate_ids(records[0].candidates, table.ids) == by_id["candidates"]["ids"]
    assert records[1].candidates.item_table is None  # every row came in the body
    assert records[1].candidates.rows is None
    assert records[1].candidates.ids == inline_body["candidates"]["ids"]


def test_readyz_reports_the_table(client: TestClient, store: Path) -> None:
    assert client.get("/readyz").json()["item_table"] == active_items_version(store)


def test_without_a_table_ids_only_is_refused(settings: Settings, store: Path, tmp_path: Path) -> None:
    bare = tmp_path / "store"
    bare.mkdir()
    (bare / "demo").symlink_to(store / "demo", target_is_directory=True)
    (bare / DEMO_KEY_DIR).symlink_to(store / DEMO_KEY_DIR, target_is_directory=True)  # its signing key
    answer = first_answer(
        settings.model_copy(update={"store": bare}), "/v1/rank", json.dumps(by_id_body(store)).encode(), JSON
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "candidates"


def test_a_tampered_table_is_refused_on_load(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    zeros, ones = np.zeros((2, 3), np.float32), np.ones((2, 2), np.float32)
    manifest = write_item_table(copy, ["a", "b"], zeros, ones, ["x", "y", "z"], ["p", "q"], "v1")
    assert load_item_table(copy, "v1").rows == {"a": 0, "b": 1}
    features = copy / "_items" / manifest.version / "features.npy"
    np.save(features, np.full((2, 3), 5, np.float32), allow_pickle=False)
    with pytest.raises(ItemTableError, match="sha256"):
        load_item_table(copy, "v1")
    with pytest.raises(ItemTableError, match="unique"):
        write_item_table(copy, ["a", "a"], zeros, ones, ["x", "y", "z"], ["p", "q"])


def test_admin_swaps_the_table_in_every_worker(settings: Settings, store: Path, tmp_path: Path) -> None:
    own = private_store(store, tmp_path / "store")
    table = load_item_table(own, active_items_version(own) or "")
    # A new version with one new item; everything else equal.
    write_item_table(
        own,
        [*table.ids, "brand-new"],
        np.vstack([table.features, table.features[:1]]),
        np.vstack([table.predictions, table.predictions[:1]]),
        table.manifest.item_columns,
        table.manifest.objectives,
        version="v2",
        activate=False,
    )
    admin = settings.model_copy(update={"store": own, "admin_token": "t", "routing_poll_seconds": 0.05})
    body = by_id_body(own, n=20)
    body["candidates"]["ids"][0] = "brand-new"
    auth = {"authorization": "Bearer t"}
    with TestClient(create_app(admin)) as client:
        assert client.post("/v1/rank", json=body).json()["field"] == "candidates.ids[0]"
        refused = client.post("/v1/admin/items/activate", json={"version": "nope"}, headers=auth)
        assert refused.status_code == 404
        answer = client.post("/v1/admin/items/activate", json={"version": "v2"}, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] == "v2"
        deadline = time.monotonic() + 10  # hang guard: the swap is asynchronous
        while client.get("/readyz").json()["item_table"] != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        ranked = client.post("/v1/rank", json=body)
        assert ranked.status_code == 200, ranked.text
