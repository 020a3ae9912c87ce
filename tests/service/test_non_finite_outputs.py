"""A finite input that overflows inside a graph is refused (422 naming it), never answered with nulls."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.store import active_version
from service.app import create_app
from service.bundle import load_bundle
from service.cascade import CascadeOutputs, FusionOutputs, UserState, synthetic_inputs
from service.exploration import NoiseSource
from service.finite_outputs import non_finite_output, refusal
from service.settings import Settings
from tests.redis_streams import wait_for_stream
from tests.service.scored_records import encoded_record

# float32's largest value is about 3.4e38: 3e38 passes the finite check and overflows in the first layer.
HUGE = 3e38


def _outputs(kind: type[CascadeOutputs] | type[FusionOutputs]) -> dict[str, np.ndarray]:
    shapes = {"top_indices": (5,), "top_scores": (5,), "stage_observations": (3, 7), "stage_actions": (3, 4)}
    shapes |= {"stage_survivors": (3,), "log_prob": (1,), "novelty": (1,)}
    rng = np.random.default_rng(0)
    values = {}
    for name in kind.__dataclass_fields__:
        shape = shapes.get(name, (1, 10))
        integer = name in ("top_indices", "stage_survivors")
        values[name] = np.arange(shape[0]) if integer else rng.standard_normal(shape).astype(np.float32)
    return values


@pytest.mark.parametrize("kind", [CascadeOutputs, FusionOutputs])
def test_the_first_non_finite_output_is_named_whichever_it_is(kind: type[CascadeOutputs] | type[FusionOutputs]) -> None:
    values = _outputs(kind)
    assert non_finite_output(kind(**values)) is None
    floats = [name for name, value in values.items() if value.dtype == np.float32]
    for name in floats:
        for bad in (np.nan, np.inf, -np.inf):
            broken = {**values, name: values[name].copy()}
            broken[name].flat[-1] = bad
            assert non_finite_output(kind(**broken)) == name
    if kind is CascadeOutputs:  # a part that is not C-contiguous takes the other path, to the same answer
        transposed = {**values, "stage_observations": values["stage_observations"].T.copy().T}
        assert not transposed["stage_observations"].flags.c_contiguous
        assert non_finite_output(kind(**transposed)) is None
        transposed["stage_observations"][0, 0] = np.nan
        assert non_finite_output(kind(**transposed)) == "stage_observations"


@pytest.fixture(params=[True, False], ids=["logging", "no-logging"])
def either_client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient]:
    """The app with decision logging on and off: the record's check is the output test only with it on."""
    app = create_app(settings.model_copy(update={"log_decisions": request.param}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_a_user_feature_that_overflows_the_graph_is_a_422_naming_it(
    either_client: TestClient, codec: str, make_request: Callable[..., dict[str, Any]]
) -> None:
    client = either_client
    body = make_request(n_candidates=100, k=5)
    body["user"]["features"][2] = HUGE
    if codec == "json":
        response = client.post("/v1/rank", json=body)
    else:
        data = msgspec.msgpack.encode(body)
        response = client.post("/v1/rank", content=data, headers={"content-type": "application/msgpack"})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "user.features[2]"


def test_the_refusal_names_the_largest_sent_value_the_failing_output_depends_on() -> None:
    """This bundle's cascade clamps candidate values (a 3e38 feature still scores finitely), so the candidate
    side of the rule is checked on the rule itself: a stage output may come from any sent matrix, the
    fusion outputs from the user state alone."""
    user = np.full((1, 4), 2.0, dtype=np.float32)
    context = np.zeros((1, 2), dtype=np.float32)
    predictions = np.ones((5, 3), dtype=np.float32)
    predictions[3, 1] = -1e30
    sent = {"user.features": user, "context": context, "candidates.predictions": predictions}

    assert refusal("top_scores", sent).field == "candidates.predictions[3][1]"
    assert refusal("novelty", sent).field == "user.features[0]"
    assert refusal("top_scores", sent).status == 422


def test_fusion_refuses_an_overflowing_user_state(
    either_client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    client = either_client
    body = make_request(n_candidates=10, k=5)
    body["user"]["features"][0] = -HUGE
    response = client.post("/v1/fusion", json={"user": body["user"], "context": body["context"]})

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "user.features[0]"


def test_a_refused_request_logs_nothing_and_the_next_one_logs_a_valid_record(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    bad = make_request(n_candidates=100, k=5)
    bad["user"]["features"][0] = HUGE
    assert client.post("/v1/rank", json=bad).status_code == 422
    served = client.post("/v1/rank", json=make_request(n_candidates=100, k=5)).json()

    entries = wait_for_stream(redis_client, settings.decision_stream, 1)
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    assert [r.request_id for r in records] == [served["request_id"]]


@pytest.mark.parametrize("kind", ["rank", "fusion"])
def test_the_record_check_refuses_every_non_finite_float_output(store: Path, kind: str) -> None:
    # With logging on, the served record's own check is the only finiteness test of the graph's outputs
    # (service/ranker.py): it must cover each of them, or a request would be answered with a NaN.
    bundle = load_bundle(store / "demo" / (active_version(store, "demo") or ""))
    inputs = synthetic_inputs(bundle.manifest, n=50, k=5)
    draws = bundle.fusion.draw(NoiseSource(0))
    state = UserState(inputs.user, inputs.context)
    decision = bundle.fusion.rank(inputs, draws) if kind == "rank" else bundle.fusion.weights(state, draws)
    outputs = decision.outputs

    assert encoded_record(bundle, inputs, outputs, draws) is not None
    floats = [name for name in type(outputs).__dataclass_fields__ if getattr(outputs, name).dtype == np.float32]
    assert len(floats) >= 6
    for name in floats:
        for bad in (np.nan, np.inf, -np.inf):
            broken = getattr(outputs, name).copy()
            broken.flat[-1] = bad
            broken_outputs = dataclasses.replace(outputs, **{name: broken})
            assert encoded_record(bundle, inputs, broken_outputs, draws) is None, (name, bad)


def test_a_record_layout_does_not_keep_its_bundle_alive(store: Path) -> None:
    # The registry drops a swapped-out bundle's sessions; the records' layout cache must not hold them.
    bundle = load_bundle(store / "demo" / (active_version(store, "demo") or ""))
    inputs = synthetic_inputs(bundle.manifest, n=20, k=5)
    draws = bundle.fusion.draw(NoiseSource(0))
    assert encoded_record(bundle, inputs, bundle.fusion.rank(inputs, draws).outputs, draws) is not None
    held = weakref.ref(bundle)
    del bundle, draws
    gc.collect()
    assert held() is None
