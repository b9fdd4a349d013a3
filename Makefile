# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean proto

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/workflow-runner serve

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check consumer executor callbacks tests bench
	$(BIN)/ruff format --check consumer executor callbacks tests bench
	$(BIN)/mypy

# Regenerates the committed Python code of proto/ (a test fails when it is stale).
proto: $(STAMP)
	$(BIN)/python -m callbacks._proto.generate
	$(BIN)/python -m consumer._proto.generate

bench: $(STAMP)
	$(BIN)/python bench/executor.py
	$(BIN)/python bench/callbacks.py
	$(BIN)/python bench/grpc_ingress.py
	$(BIN)/python bench/amqp_ingress.py
	$(BIN)/python bench/temporal_ingress.py
	$(BIN)/python bench/http_call.py
	$(BIN)/python bench/payloads.py
	$(BIN)/python bench/isolation.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
