# Review UI image: the Streamlit app. No torch, no database driver use: it talks only to
# the orchestrator API. Only the core library and the [ui] extra are installed.
#
#   docker build -f deploy/docker/review-ui.Dockerfile -t regrasp/review-ui .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# -- builder: the library (built as a wheel) and its extra, installed into /opt/venv -----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/regrasp ./shared/regrasp
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[ui]"

# -- runtime: the venv and the app, run as an unprivileged user ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 regrasp \
    && useradd --system --uid 10001 --gid regrasp --create-home --home-dir /home/regrasp regrasp
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY services/__init__.py services/__init__.py
COPY services/review_ui services/review_ui
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["streamlit", "run", "services/review_ui/streamlit_app.py", "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true", "--browser.gatherUsageStats", "false", "--theme.primaryColor", "#3b6ea8"]
