# The two set-up commands: `make run` and `make test` (README). Both install what they
# need into .venv/ and node_modules/ first.
PY := .venv/bin/python
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := stackemu/.proto-gen

.PHONY: install run down status demo test lint unit bench clean

install: .venv/.installed node_modules/.installed $(GEN_STAMP)

.venv/.installed node_modules/.installed &: pyproject.toml package.json scripts/bootstrap.sh
	./scripts/bootstrap.sh

$(GEN_STAMP): $(PROTOS) .venv/.installed scripts/genproto.sh
	./scripts/genproto.sh
	touch $@

run: install
	.venv/bin/stackemu up
	.venv/bin/stackemu demo
	@echo
	@echo "The stack is still running: '.venv/bin/stackemu status' shows it, 'make down' stops it."

down:
	.venv/bin/stackemu down

status:
	.venv/bin/stackemu status

demo: install
	.venv/bin/stackemu demo

lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy
	node_modules/.bin/buf lint

test: install
	.venv/bin/python -m pytest -q

clean:
	rm -rf .venv node_modules $(GEN_STAMP) .mypy_cache .pytest_cache .ruff_cache
	find stackemu -name '*_pb2*.py*' -path '*/v1/*' -delete
