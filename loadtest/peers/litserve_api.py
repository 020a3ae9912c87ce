"""The LitServe peer, written the way LitServe's docs show: a LitAPI with setup / decode_request / predict /
encode_response, served by LitServer with its defaults (one CPU worker, no batching).

LitServe parses the JSON body itself, so this peer takes the JSON encodings only (by id and inline rows).
Its own logging is turned down to warnings, as every server in the comparison runs without access logs.

Run: PEER_STORE=<store> [PEER_EXPLORATION_SEED=0] python -m loadtest.peers.litserve_api --port 8000
"""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls

from loadtest.peers.bundle import PeerBundle, RankInputs, load_from_env


class CascadeAPI(ls.LitAPI):  # type: ignore[misc]  # LitServe ships no type information
    def setup(self, device: str) -> None:
        self.bundle: PeerBundle = load_from_env()

    # Unannotated, as in LitServe's docs: LitServe reads the annotation to decide how to parse the request.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return self.bundle.inputs(request)

    def predict(self, x: RankInputs) -> tuple[list[str], Any]:
        return x.ids, self.bundle.run(x)

    def encode_response(self, output: tuple[list[str], Any]) -> dict[str, Any]:
        ids, outputs = output
        return self.bundle.answer(ids, outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    api = CascadeAPI(api_path="/v1/rank")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, healthcheck_path="/readyz")
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
