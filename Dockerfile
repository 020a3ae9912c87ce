# syntax=docker/dockerfile:1
# The serving image: `cascade serve` with the `serve` extra at the versions of requirements.lock
# (onnxruntime, FastAPI, the Redis client) and nothing that imports torch. What it copies from the
# repository is deploy/image-contents.txt; tests/service/test_serving_image.py checks the COPY lines
# against that list and, since no Docker engine runs on the build machines, installs the same files
# into a fresh venv from the same lock and runs this file's ENTRYPOINT/CMD, ENV and HEALTHCHECK.
#
# Bundles are read from /models (<policy>/<version>/ + ACTIVE; a volume or an init container's sync);
# REDIS_URL must point at Redis. The root filesystem may be read-only: the process writes only to the
# decision-log spool (/var/lib/cascade/spool, mount a volume there) and to the model store (pruning).

# ---- build: a venv with the project and its pinned dependencies ----
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml requirements.lock cascade_cli.py ./
COPY contracts ./contracts
COPY service ./service
COPY archive ./archive
# A regular (not editable) install, so the runtime stage needs only the venv, not the sources.
RUN /opt/venv/bin/pip install -c requirements.lock ".[serve]" \
    && /opt/venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

# ---- runtime: the venv alone, as a non-root user ----
FROM python:3.11-slim-bookworm
RUN useradd --no-create-home --uid 10001 --user-group cascade \
    && mkdir -p /models /var/lib/cascade/spool \
    && chown -R 10001:10001 /models /var/lib/cascade
COPY --from=build /opt/venv /opt/venv
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/cascade
# Every setting is an environment variable (service/settings.py; `cascade serve` reads host, port and
# workers from CASCADE_HOST / CASCADE_PORT / CASCADE_WORKERS). Limits such as CASCADE_MAX_BODY_BYTES
# are settings too; override any of them at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CASCADE_HOST=0.0.0.0 \
    CASCADE_PORT=8000 \
    CASCADE_WORKERS=2 \
    CASCADE_STORE=/models \
    CASCADE_POLICY=demo \
    CASCADE_LOG_SPOOL_DIR=/var/lib/cascade/spool
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['CASCADE_PORT'] + '/readyz', timeout=2)"]

# SIGTERM: the server stops accepting, drains open requests, then each worker flushes its decision
# log (at most CASCADE_LOG_FLUSH_SECONDS, then spools the rest): well inside a 30 s grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cascade"]
CMD ["serve"]
