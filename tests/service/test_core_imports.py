"""The core of the service knows no web framework: its errors are values the HTTP layer renders."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ("service.ranker", "service.decode", "service.item_catalog", "service.problems", "service.body")


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_neither_fastapi_nor_starlette(module: str) -> None:
    code = (
        f"import sys; import {module}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_problem_raised_by_the_core_is_rendered_as_problem_json() -> None:
    from service.problems import PROBLEM_MEDIA_TYPE, invalid_field
    from service.responses import problem_response

    response = problem_response(invalid_field("k", "k must be at least 1"))

    assert response.status_code == 422 and response.media_type == PROBLEM_MEDIA_TYPE
    assert b'"field":"k"' in response.body and b"/problems/invalid-field" in response.body
