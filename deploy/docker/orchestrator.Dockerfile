# Orchestrator image: the FastAPI orchestrator and the `regrasp` CLI (migrations, admins).
# No torch: only the core library and the [orchestrator] extra are installed.
#
#   docker build -f deploy/docker/orchestrator.Dockerfile -t regrasp/orchestrator .
#
# Build context: the repository root; orchestrator.Dockerfile.dockerignore beside this file
# sends only pyproject.toml, README.md, shared/regrasp/ and services/.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- builder: the library (built as a wheel) and its extra, installed into /opt/venv -----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/regrasp ./shared/regrasp
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[orchestrator]"

# -- runtime: the venv and the service code, run as an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 regrasp \
    && useradd --system --uid 10001 --gid regrasp --create-home --home-dir /home/regrasp regrasp \
    && mkdir -p /var/lib/regrasp /imports \
    && chown regrasp:regrasp /var/lib/regrasp
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY services/__init__.py services/__init__.py
COPY services/orchestrator services/orchestrator
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REGRASP_BIND_HOST=0.0.0.0 \
    REGRASP_DATA_DIR=/var/lib/regrasp
USER 10001:10001
EXPOSE 8000
# /readyz: the process answers and the database schema is current.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "services.orchestrator", "serve", "--host", "0.0.0.0", "--port", "8000"]
