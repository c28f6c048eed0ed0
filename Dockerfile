# Relay's images: one builder, three small runtime targets.
#
#   docker build --target api      -t relay/relay-api:TAG .
#   docker build --target migrator -t relay/relay-migrator:TAG .
#   docker build --target agent    -t relay/relay-agent:TAG .
#
# Plain Dockerfile syntax only (no syntax directive, heredocs or COPY --link), so
# the classic builder and the BuildKit of Docker 20.10 both build it.

# ---------------------------------------------------------------- builder
# Wheels of the three services and of everything they depend on, then one
# virtualenv per target at the path it will have at run time.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Third-party wheels first, from the services' declared dependencies alone, so
# that a change to the code does not fetch them all again. They all ship
# manylinux wheels: no compiler is needed.
COPY services/api/pyproject.toml services/api/
COPY services/migrator/pyproject.toml services/migrator/
COPY services/agent/pyproject.toml services/agent/
RUN python -c "import pathlib, re, tomllib; \
own = {'relay-api', 'relay-migrator', 'relay-agent'}; \
files = sorted(pathlib.Path('services').glob('*/pyproject.toml')); \
deps = [d for f in files for d in tomllib.loads(f.read_text())['project']['dependencies']]; \
print('\n'.join(d for d in deps if re.match(r'[A-Za-z0-9._-]+', d)[0].lower().replace('_', '-') not in own))" \
        > /tmp/requirements.txt \
 && pip wheel --wheel-dir /wheels --requirement /tmp/requirements.txt

# Then the services' own wheels.
COPY services/api/ services/api/
COPY services/migrator/ services/migrator/
COPY services/agent/ services/agent/
RUN pip wheel --wheel-dir /wheels --no-deps \
        ./services/api ./services/migrator ./services/agent

FROM builder AS venv-api
RUN python -m venv --without-pip /opt/relay \
 && pip --python /opt/relay/bin/python install --no-index --find-links /wheels \
        /wheels/relay_api-*.whl /wheels/relay_migrator-*.whl

FROM builder AS venv-migrator
RUN python -m venv --without-pip /opt/relay \
 && pip --python /opt/relay/bin/python install --no-index --find-links /wheels \
        /wheels/relay_migrator-*.whl

FROM builder AS venv-agent
RUN python -m venv --without-pip /opt/relay \
 && pip --python /opt/relay/bin/python install --no-index --find-links /wheels \
        /wheels/relay_agent-*.whl

# ---------------------------------------------------------------- runtime base
FROM python:3.11-slim AS runtime

ENV PATH=/opt/relay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# One unprivileged user for every image; /data is the relay's DATA_DIR.
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --home-dir /home/relay \
        --create-home --shell /usr/sbin/nologin relay \
 && mkdir /data \
 && chown relay:relay /data

WORKDIR /home/relay

# Filled in by `make images`; see mk/containers.mk.
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=
LABEL org.opencontainers.image.vendor="Relay" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="python:3.11-slim"

# ---------------------------------------------------------------- api
FROM runtime AS api
LABEL org.opencontainers.image.title="relay-api" \
      org.opencontainers.image.description="Relay: the HTTP server of a distributed cron scheduler"
COPY --from=venv-api /opt/relay /opt/relay
ENV DATA_DIR=/data HOST=0.0.0.0 PORT=3000
USER 10001:10001
EXPOSE 3000
# The slim image has no curl: ask python. urlopen raises on anything but 2xx.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["relay"]

# ---------------------------------------------------------------- migrator
FROM runtime AS migrator
LABEL org.opencontainers.image.title="relay-migrator" \
      org.opencontainers.image.description="Relay's one-shot schema migrator"
COPY --from=venv-migrator /opt/relay /opt/relay
ENV DATA_DIR=/data
USER 10001:10001
CMD ["relay-migrate"]

# ---------------------------------------------------------------- agent
FROM runtime AS agent
LABEL org.opencontainers.image.title="relay-agent" \
      org.opencontainers.image.description="The agent that runs Relay's jobs"
COPY --from=venv-agent /opt/relay /opt/relay
ENV RELAY_AGENT_STATE_DIR=/var/lib/relay-agent \
    RELAY_AGENT_WORKDIR=/home/relay
RUN mkdir -p /var/lib/relay-agent \
 && chown relay:relay /var/lib/relay-agent
USER 10001:10001
CMD ["relay-agent", "run"]
