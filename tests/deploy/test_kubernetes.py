"""deploy/kubernetes and deploy/kserve: every manifest is valid Kubernetes and says what the design asks.

Validation is kubernetes-validate's strict JSON schema (unknown fields are errors) of one pinned
Kubernetes version. The KServe InferenceService is a custom resource the schema does not know: its
predictor is a PodSpec plus KServe's scaling fields, so the PodSpec part is validated as a Pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from service.settings import Settings
from tests.deploy.image import Dockerfile
from tests.deploy.manifests import DEPLOY, KUSTOMIZATIONS, ROOT, documents, find, render, resource_files
from tests.deploy.tools import require

# The oldest release the manifests need (native sidecar init containers are on by default since 1.29);
# pinned so a new kubernetes-validate schema cannot change the verdict silently.
KUBERNETES_VERSION = "1.32.0"
# The predictor fields KServe adds to a PodSpec (ComponentExtensionSpec and the protocol version).
KSERVE_COMPONENT_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "protocolVersion",
}
# Settings names `cascade serve` reads besides service/settings.py (its --host/--port/--workers), and
# the ones the bundle-signature check of the loader reads (the signing key's path and whether to insist).
EXTRA_SETTINGS = {
    "CASCADE_HOST",
    "CASCADE_PORT",
    "CASCADE_WORKERS",
    "CASCADE_SIGNING_PUBLIC_KEY",
    "CASCADE_REQUIRE_SIGNATURE",
}


def validate(doc: dict[str, Any]) -> None:
    """Strict schema validation; an InferenceService's predictor is checked as the Pod it becomes."""
    if doc["apiVersion"].startswith("serving.kserve.io/"):
        assert doc["kind"] == "InferenceService"
        predictor = {k: v for k, v in doc["spec"]["predictor"].items() if k not in KSERVE_COMPONENT_FIELDS}
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]}, "spec": predictor}
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def known_settings() -> set[str]:
    fields = {f"CASCADE_{name.upper()}" for name in Settings.model_fields}
    return fields | {"REDIS_URL"} | EXTRA_SETTINGS


def source_documents() -> list[tuple[Path, dict[str, Any]]]:
    files = sorted({path for folder in KUSTOMIZATIONS for path in resource_files(folder)})
    return [(path, doc) for path in files for doc in documents(path)]


@pytest.mark.parametrize(
    ("path", "doc"),
    source_documents(),
    ids=lambda value: str(value.relative_to(DEPLOY)) if isinstance(value, Path) else value.get("kind", ""),
)
def test_every_manifest_passes_strict_validation_against_the_pinned_kubernetes(path: Path, doc: dict[str, Any]) -> None:
    validate(doc)


def test_a_misspelt_field_fails_validation() -> None:
    deployment = find([doc for _, doc in source_documents()], "Deployment", "cascade-serve")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**deployment, "spec": {**deployment["spec"]}}
    broken["spec"]["template"] = {
        **deployment["spec"]["template"],
        "spec": {**deployment["spec"]["template"]["spec"], "containers": [{**container, "readinessProbes": {}}]},
    }

    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_each_kustomization_renders_and_every_rendered_object_validates(folder: Path) -> None:
    kubectl = require("kubectl")

    rendered = render(kubectl, folder)

    assert rendered
    for doc in rendered:
        validate(doc)


def server_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment", "cascade-serve")["spec"]["template"]["spec"]
    return spec


def test_the_deployment_probes_scales_spreads_and_runs_the_image_as_built() -> None:
    docs = [doc for _, doc in source_documents()]
    pod = server_pod(docs)
    (container,) = pod["containers"]
    image = Dockerfile.read(ROOT / "Dockerfile")

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # bundle load + warm-up
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["topologySpreadConstraints"]
    # `cascade serve` through the image's ENTRYPOINT, on the port the image exposes.
    assert ["cascade", *container["args"]] == image.argv
    assert container["ports"][0]["containerPort"] == int(image.env["CASCADE_PORT"])
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Service links would set CASCADE_..._PORT=tcp://... beside the settings.
    assert pod["enableServiceLinks"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {image.env["CASCADE_STORE"], image.env["CASCADE_LOG_SPOOL_DIR"]} <= mounts

    hpa = find(docs, "HorizontalPodAutoscaler")
    kinds = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["Pods"]["pods"]["metric"]["name"] == "cascade_requests_in_flight"
    assert find(docs, "PodDisruptionBudget")["spec"]["selector"]
    assert find(docs, "Service", "cascade-serve")["spec"]["ports"][0]["targetPort"] == "http"


def test_the_settings_and_secret_name_only_settings_the_service_reads() -> None:
    docs = [doc for _, doc in source_documents()]
    config = find(docs, "ConfigMap", "cascade-serve-settings")["data"]
    secret = find(docs, "Secret", "cascade-serve-secrets")["stringData"]

    assert set(config) <= known_settings()
    assert {"CASCADE_ADMIN_TOKEN", "REDIS_URL"} <= set(secret)
    # The key file the loader is pointed at is the one the Secret mounts.
    pod = server_pod(docs)
    secrets = [v for v in pod["volumes"] if "secret" in v]
    (key_volume,) = [v for v in secrets if v["secret"]["secretName"] == "cascade-serve-secrets"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == key_volume["name"]]
    assert config["CASCADE_SIGNING_PUBLIC_KEY"] == f"{mount['mountPath']}/{key_volume['secret']['items'][0]['path']}"


def test_the_kserve_predictor_uses_the_open_inference_protocol_health_routes() -> None:
    (isvc,) = documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    (container,) = isvc["spec"]["predictor"]["containers"]

    assert container["name"] == "kserve-container"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["args"] == ["serve"]
