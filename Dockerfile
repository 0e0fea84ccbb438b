# syntax=docker/dockerfile:1
# Every service image, from one recipe. Build from the repo root; SERVICE names the
# folder under services/ (its uv package), the target of the same name sets the command:
#   buildah bud --build-arg SERVICE=email-worker --target email-worker -t email-worker .
#   docker build --build-arg SERVICE=email-worker --target email-worker -t email-worker .
# Targets: booking-api, outbox-relay, email-worker, invoice-worker, audit-worker,
# queue-autoscaler, booking-events. skaffold.yaml and tests/test_images.py pass both.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- deps: uv installs the service's locked third-party dependencies ----
FROM ${BASE_IMAGE} AS deps
ARG UV_VERSION=0.13.8
# Optional, build time only: the CA bundle pip and uv should trust, for networks
# behind a TLS-inspecting proxy (tests/test_images.py binds the host's bundle over
# /etc/ssl/certs/ca-certificates.crt and names it here). Unset by default.
ARG SSL_CERT_FILE
ARG PIP_CERT
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# From the lock alone: this stage is rebuilt only when uv.lock or the root
# pyproject.toml change, not on every source edit.
COPY pyproject.toml uv.lock ./
# Declared only now, so every image shares the layers above from the build cache.
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=<folder under services/> is required" >&2; exit 1; }
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --no-install-workspace --package "${SERVICE}"

# ---- builder: the workspace packages this service uses (uv export names them) ----
# Installed as wheels (not editable), so no source is needed at run time, under a
# prefix of their own: the runtime copies them over the dependencies' virtualenv as
# a small layer of their own, so a source edit rebuilds only that layer, not the
# whole virtualenv's. Their bytecode is compiled for the path they run from.
FROM deps AS builder
ARG SERVICE
ARG SSL_CERT_FILE
ARG PIP_CERT
COPY libs/ libs/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv export --frozen --no-dev --no-editable --only-emit-workspace --no-hashes \
        --no-header --no-annotate --package "${SERVICE}" -o /src/workspace.txt \
    && UV_COMPILE_BYTECODE=0 /opt/uv/bin/uv pip install --no-deps --python /app/.venv/bin/python \
        --prefix /app/workspace -r /src/workspace.txt \
    && /app/.venv/bin/python -m compileall -q -s /app/workspace -p /app/.venv /app/workspace/lib

# ---- runtime: the base's Python, a non-root user, the virtualenv; no uv, no caches ----
# The user and settings come first and the virtualenv last, so the invoice image's
# system libraries (installed before its virtualenv) stay cached across source edits.
FROM ${BASE_IMAGE} AS runtime-base
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --no-log-init \
        --shell /usr/sbin/nologin app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001

FROM runtime-base AS runtime
COPY --from=deps /app/.venv /app/.venv
COPY --from=builder /app/workspace/ /app/.venv/

# ---- one target per service: only its command, ports and system libraries ----

# gunicorn handles SIGTERM: it stops accepting, lets requests finish within the
# graceful timeout (booking_api.gunicorn_conf), then exits. It listens on
# 0.0.0.0:$PORT with $WEB_CONCURRENCY workers (booking_api.gunicorn_worker: requests
# are read on an event loop, each runs in one of --threads threads); more flags go in
# GUNICORN_CMD_ARGS. Prometheus metrics (every worker's, summed through
# PROMETHEUS_MULTIPROC_DIR, a dir under /tmp unless set) are served by the master on
# $BOOKING_METRICS_PORT (9100), a port of their own that an Ingress for $PORT never
# reaches. Worker heartbeat files live in /dev/shm and there is no control socket,
# so a read-only root filesystem is fine with an emptyDir at /tmp.
FROM runtime AS booking-api
ENV PORT=8000 \
    WEB_CONCURRENCY=1 \
    GUNICORN_CMD_ARGS="--threads 4"
EXPOSE 8000 9100
CMD ["gunicorn", "--config", "python:booking_api.gunicorn_conf", "--worker-tmp-dir", "/dev/shm", \
     "--no-control-socket", "booking_api.wsgi:app"]

# The progress streams and pages (aiohttp): on SIGTERM it closes the open streams
# (browsers reconnect elsewhere with Last-Event-ID) and exits. One port,
# $BOOKING_EVENTS_PORT (8001), for HTTP and /metrics.
FROM runtime AS booking-events
EXPOSE 8001
CMD ["booking-events"]

# The outbox relay stops on SIGTERM after its current batch; metrics on
# $BOOKING_METRICS_PORT (9100).
FROM runtime AS outbox-relay
EXPOSE 9100
CMD ["booking-relay"]

# Dramatiq's main process handles SIGTERM: workers stop taking messages and get
# --worker-shutdown-timeout (ms) to finish; give the pod a longer grace period.
# Override CMD to tune processes and threads. Dramatiq's Prometheus exporter listens
# on 9191 (dramatiq_prom_port) and keeps its files in /tmp (an emptyDir under a
# read-only root filesystem).
FROM runtime AS email-worker
EXPOSE 9191
ENTRYPOINT ["dramatiq", "email_worker.broker", "email_worker.actors", "--queues", "email"]
CMD ["--processes", "1", "--threads", "4", "--worker-shutdown-timeout", "30000"]

FROM runtime AS audit-worker
EXPOSE 9191
ENTRYPOINT ["dramatiq", "audit_worker.broker", "audit_worker.actors", "--queues", "audit"]
CMD ["--processes", "1", "--threads", "4", "--worker-shutdown-timeout", "30000"]

# Signed deliveries to tenants' endpoints: threads wait on receivers, not the CPU, so
# many per process. It refuses to start without BOOKING_WEBHOOKS_KEY (exit 2).
FROM runtime AS webhook-worker
EXPOSE 9191
ENTRYPOINT ["dramatiq", "webhook_worker.broker", "webhook_worker.actors", "--queues", "webhook"]
CMD ["--processes", "1", "--threads", "16", "--worker-shutdown-timeout", "30000"]

# WeasyPrint's system libraries (Pango, HarfBuzz's subsetter) and one font family:
# only this image has them. Fontconfig keeps its cache under XDG_CACHE_HOME, and /tmp
# is the one place that stays writable under a read-only root filesystem.
FROM runtime-base AS invoice-worker
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log
USER 10001:10001
ENV XDG_CACHE_HOME=/tmp/.cache
# The runtime stage's two copies, after the system libraries so these stay cached.
COPY --from=deps /app/.venv /app/.venv
COPY --from=builder /app/workspace/ /app/.venv/
EXPOSE 9191
ENTRYPOINT ["dramatiq", "invoice_worker.broker", "invoice_worker.actors", "--queues", "invoice"]
CMD ["--processes", "1", "--threads", "4", "--worker-shutdown-timeout", "30000"]

# kopf handles SIGTERM: it stops its handlers and exits. One replica, so no peering
# (--standalone); the liveness endpoint (8080) is for the Deployment's probe and
# Prometheus metrics are on QUEUE_AUTOSCALER_METRICS_PORT (9102). Override CMD to
# watch one namespace (--namespace NS) instead of all. Client certificates go to
# temporary files: mount an emptyDir at /tmp under a read-only root filesystem.
FROM runtime AS queue-autoscaler
EXPOSE 8080 9102
ENTRYPOINT ["kopf", "run", "-m", "queue_autoscaler.operator"]
CMD ["--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
