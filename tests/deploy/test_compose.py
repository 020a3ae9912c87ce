"""deploy/compose.yaml: replicas of the image, Redis with AOF, the archiver; settings the service reads.

No Docker engine runs here, so this reads the file as Compose would and checks what it promises.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.manifests import DEPLOY, ROOT, documents
from tests.deploy.test_kubernetes import known_settings


def compose() -> dict[str, Any]:
    (spec,) = documents(DEPLOY / "compose.yaml")
    return spec


def test_compose_runs_two_replicas_of_the_image_built_here_through_cascade_serve() -> None:
    cascade = compose()["services"]["cascade"]

    assert (DEPLOY / cascade["build"]["context"] / cascade["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert cascade["deploy"]["replicas"] >= 2
    assert cascade["command"] == ["serve"]
    assert cascade["read_only"] is True
    assert cascade["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = compose()["services"]["redis"]

    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_compose_archiver_runs_cascade_archive_from_the_same_image() -> None:
    services = compose()["services"]

    assert services["archiver"]["image"] == services["cascade"]["image"]
    assert services["archiver"]["command"] == ["archive", "--lake", "/lake"]
    assert any(volume.endswith(":/lake") for volume in services["archiver"]["volumes"])
    assert services["archiver"]["healthcheck"] == {"disable": True}  # it has no /readyz to answer


def test_compose_sets_only_settings_the_service_reads() -> None:
    for name in ("cascade", "archiver"):
        assert set(compose()["services"][name]["environment"]) <= known_settings()
