# The serving image: the `serve` extra only, at the versions of requirements.lock (onnxruntime, FastAPI, Redis client) — no torch.
# Bundles are mounted at /models (<policy>/<version>/ + ACTIVE); REDIS_URL must point at Redis.
# tests/service/test_serving_image.py installs the same extra in a fresh venv and serves from it,
# since no Docker engine runs on the build machines.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 cascade
WORKDIR /app

COPY pyproject.toml requirements.lock cascade_cli.py ./
COPY contracts ./contracts
COPY service ./service
COPY archive ./archive
RUN pip install --no-cache-dir -c requirements.lock ".[serve]" \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

USER cascade
ENV CASCADE_STORE=/models \
    CASCADE_POLICY=demo \
    PYTHONUNBUFFERED=1
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)" || exit 1

# Workers = cores of the container; each worker runs one onnxruntime thread (CASCADE_ORT_INTRA_OP_THREADS).
CMD ["sh", "-c", "exec uvicorn service.main:build --factory --host 0.0.0.0 --port 8000 --workers ${WORKERS:-2} --loop uvloop --http httptools --no-access-log"]
