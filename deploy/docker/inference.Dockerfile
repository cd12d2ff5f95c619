# Inference image: the BentoML service (services/inference/service.py) on the pinned torch.
# PyPI's Linux torch wheels bundle the CUDA runtime; the NVIDIA driver comes from the host.
# CPU-only image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (`bentoml build -f services/inference/bentofile.yaml .` + `bentoml containerize` is the
# BentoML-native alternative; this file keeps one user, layout and naming for all images.)
#
#   docker build -f deploy/docker/inference.Dockerfile -t regrasp/inference .
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
    pip install ".[inference]"

# -- runtime: the venv and the service code, run as an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 regrasp \
    && useradd --system --uid 10001 --gid regrasp --create-home --home-dir /home/regrasp regrasp \
    && mkdir -p /var/lib/regrasp \
    && chown regrasp:regrasp /var/lib/regrasp
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY services/__init__.py services/__init__.py
COPY services/inference services/inference
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BENTOML_DO_NOT_TRACK=true \
    BENTOML_HOME=/home/regrasp/bentoml \
    REGRASP_BIND_HOST=0.0.0.0 \
    REGRASP_DATA_DIR=/var/lib/regrasp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 3000
# /readyz: BentoML's readiness (the service's __is_ready__: the database answers). Loading
# a model at start takes a while, hence the long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
CMD ["bentoml", "serve", "services.inference.service:InferenceService", "--host", "0.0.0.0", "--port", "3000"]
