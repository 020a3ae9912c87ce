"""openapi.yaml is the published contract: it must be exactly what the app serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_matches_the_app(client: TestClient) -> None:
    committed = yaml.safe_load(OPENAPI_FILE.read_text())
    served = client.get("/openapi.json").json()

    assert committed == served, "openapi.yaml is stale: run `make openapi` and commit it"


def test_every_route_with_a_body_documents_problem_responses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    with_body = [
        (path, operation)
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if "requestBody" in operation
    ]
    assert {path for path, _ in with_body} >= {"/v1/rank", "/v1/feedback", "/v1/admin/policies/{policy}/activate"}
    for path, operation in with_body:
        assert "422" in operation["responses"], path
        assert "application/problem+json" in operation["responses"]["422"]["content"], path


def test_every_schema_reference_resolves(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    defined = set(document["components"]["schemas"])
    text = json.dumps(document)
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert referenced <= defined, f"dangling $ref: {sorted(referenced - defined)}"
