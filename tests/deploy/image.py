"""The serving image as the tests read it: deploy/image-contents.txt and the Dockerfile's instructions."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTENTS = ROOT / "deploy" / "image-contents.txt"


def image_contents() -> list[str]:
    """The repository paths the image carries (deploy/image-contents.txt, comments and blanks skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in CONTENTS.read_text().splitlines())
    return [line for line in lines if line]


def exec_form(text: str, keyword: str) -> list[str]:
    """An instruction's JSON-array argument; the shell form would put `sh -c` between the signal and us."""
    try:
        argv = json.loads(text)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list):
        raise ValueError(f"{keyword} must be in exec form (a JSON array), not {text!r}")
    return [str(arg) for arg in argv]


@dataclass(frozen=True)
class Dockerfile:
    """What the tests read from the Dockerfile: the build context it copies and how it runs."""

    copied: list[str]  # sources of COPY lines that read the build context (not --from another stage)
    env: dict[str, str]  # ENV of the final stage
    argv: list[str]  # ENTRYPOINT + CMD of the final stage (exec form)
    healthcheck: list[str]
    text: str

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        text = path.read_text()
        instructions = [" ".join(line.split()) for line in re.sub(r"\\\n", " ", text).splitlines()]
        instructions = [line for line in instructions if line and not line.startswith("#")]
        final = max(i for i, line in enumerate(instructions) if line.startswith("FROM "))
        copied: list[str] = []
        for line in instructions:
            if line.startswith("COPY ") and "--from=" not in line:
                copied += shlex.split(line)[1:-1]
        env: dict[str, str] = {}
        entrypoint: list[str] = []
        cmd: list[str] = []
        healthcheck: list[str] = []
        for line in instructions[final:]:
            keyword, _, rest = line.partition(" ")
            if keyword == "ENV":
                env.update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
            elif keyword == "ENTRYPOINT":
                entrypoint = exec_form(rest, keyword)
            elif keyword == "CMD":
                cmd = exec_form(rest, keyword)
            elif keyword == "HEALTHCHECK":
                healthcheck = exec_form(rest.split(" CMD ", 1)[-1], keyword)
        return cls(copied, env, [*entrypoint, *cmd], healthcheck, text)
