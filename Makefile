# The verbs a newcomer needs. `make run` and `make test` install what they use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SERVICES := services/api services/migrator services/agent

.PHONY: install run migrate test lint fmt bench clean

$(INSTALLED): $(addsuffix /pyproject.toml,$(SERVICES)) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(addprefix -e ,$(SERVICES)) -r requirements-dev.txt
	touch $@

install: $(INSTALLED)

migrate: $(INSTALLED)
	$(BIN)/relay-migrate

run: migrate
	$(BIN)/relay

test: lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(INSTALLED)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV)

-include mk/*.mk
