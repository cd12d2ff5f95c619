# Trainer image: the trainer API (`serve`) and its GPU workers (`worker`) share it.
# torch/torchvision are the versions pinned in pyproject.toml, installed first (as the
# Makefile does) so the resolver never pulls another build. PyPI's Linux wheels bundle the
# CUDA runtime, so a slim Python base is enough: the host (or the Kubernetes device plugin)
# provides the NVIDIA driver. CPU-only image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
#
#   docker build -f deploy/docker/trainer.Dockerfile -t regrasp/trainer .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- builder: torch, then the library and its extra, into /opt/venv ------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/regrasp ./shared/regrasp
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[trainer]"

# -- runtime: the venv and the service code, run as an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 regrasp \
    && useradd --system --uid 10001 --gid regrasp --create-home --home-dir /home/regrasp regrasp \
    && mkdir -p /var/lib/regrasp \
    && chown regrasp:regrasp /var/lib/regrasp
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY services/__init__.py services/__init__.py
COPY services/trainer services/trainer
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REGRASP_BIND_HOST=0.0.0.0 \
    REGRASP_DATA_DIR=/var/lib/regrasp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 8001
# Checks the API; workers (`python -m services.trainer worker`) serve no HTTP and turn this
# off (compose: healthcheck.disable) — their liveness is the job heartbeat in the database.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=4)"]
CMD ["python", "-m", "services.trainer", "serve", "--host", "0.0.0.0", "--port", "8001"]
