# syntax=docker/dockerfile:1
# The Stratochat server image (docs/deploy.md). Two stages: "build" makes a virtualenv from the locked
# requirements, "runtime" copies only that virtualenv onto a fresh slim base.
#
# The base is written literally, not as `FROM ${ARG}`: scanners (checkov CKV_DOCKER_7) and the offline
# build in tests/deploy (which tags a Debian stand-in under this exact name) both need the real name.
# Both stages use the same base, so the venv's interpreter link points at the same python in each.
# It is Docker Hub's official python image through its ECR Public mirror, which CodeBuild pulls from
# without Docker Hub's anonymous rate limit.

FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# deploy/requirements.txt is `uv export` of uv.lock with hashes (a test keeps them equal), so pip installs
# exactly the locked versions, refuses anything unhashed and, with wheels only, compiles nothing.
COPY deploy/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stratochat ./stratochat
# The project itself (pure Python, no dependencies left to resolve); its build backend stays in this stage.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="stratochat" \
      org.opencontainers.image.description="Self-hostable real-time chat server"
# Bind every interface inside the container; trust X-Forwarded-* only from the addresses the operator
# configures (the task definition sets the VPC range the load balancer lives in), loopback by default.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRATOCHAT_HOST=0.0.0.0 \
    STRATOCHAT_PORT=8000 \
    STRATOCHAT_FORWARDED_ALLOW_IPS=127.0.0.1 \
    STRATOCHAT_DATA_DIR=/var/lib/stratochat
RUN useradd --no-log-init --no-create-home --uid 10001 --user-group --home-dir /var/lib/stratochat \
        --shell /usr/sbin/nologin stratochat \
    && install -d -o stratochat -g stratochat -m 0700 /var/lib/stratochat
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/stratochat
EXPOSE 8000
# uvicorn drains on SIGTERM (sockets closed with 1001/1012, exit within 30 s); ECS waits StopTimeout.
STOPSIGNAL SIGTERM
# Liveness only (/healthz): a backend outage shows on /readyz, which the load balancer checks, and must not
# get every task killed at once. The slim base has no curl, so python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STRATOCHAT_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["stratochat", "serve"]
