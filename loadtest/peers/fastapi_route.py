"""The hand-tuned peer: one FastAPI route as an engineer tuning for speed would write it.

orjson in and out, a dict id → row lookup, one onnxruntime call on the event loop (no thread hop), no
logging, no validation beyond what numpy and onnxruntime enforce. It is the bar cascade-serve must clear
with everything it adds (problem+json errors, decision logging, routing, metrics).

Run: PEER_STORE=<store> [PEER_EXPLORATION_SEED=0] uvicorn loadtest.peers.fastapi_route:app --no-access-log
"""

from __future__ import annotations

import msgspec
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from loadtest.peers.bundle import load_from_env, matrix

bundle = load_from_env()
rows, table_features, table_predictions = bundle.rows, bundle.features, bundle.predictions
app = FastAPI()


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


@app.post("/v1/rank")
async def rank(request: Request) -> Response:
    data = await request.body()
    msgpack = request.headers.get("content-type", "").startswith("application/msgpack")
    body = msgspec.msgpack.decode(data) if msgpack else orjson.loads(data)
    candidates = body["candidates"]
    ids = candidates["ids"]
    if "features" in candidates:
        features, predictions = matrix(candidates["features"]), matrix(candidates["predictions"])
    else:
        index = np.fromiter(map(rows.__getitem__, ids), dtype=np.intp, count=len(ids))
        features, predictions = np.take(table_features, index, axis=0), np.take(table_predictions, index, axis=0)
    context = body.get("context") or [0.0] * bundle.context_dim
    top, scores, action = bundle.session.run(
        ["top_indices", "top_scores", "fusion_action"],
        {
            "user": np.asarray([body["user"]["features"]], dtype=np.float32),
            "context": np.asarray([context], dtype=np.float32),
            "item_features": features,
            "mtl_predictions": predictions,
            "fusion_noise": bundle.noise(),
            "stage_sizes": bundle.stage_sizes,
            "k": np.asarray([body["k"]], dtype=np.int64),
        },
    )
    answer = {
        "items": [{"id": ids[r], "score": s} for r, s in zip(top.tolist(), scores.tolist(), strict=True)],
        "fusion_weights": dict(zip(bundle.action_names, action[0].tolist(), strict=True)),
    }
    return Response(orjson.dumps(answer), media_type="application/json")
