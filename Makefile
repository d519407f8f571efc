# The two commands of the README: `make demo` (the main job on embedded defaults) and
# `make test` (everything CI runs). Both install into .venv first.
.PHONY: install demo test lint bench

VENV := .venv/bin
DEMO_HOME ?= .clipdex-demo
LIBRARY ?= samples/photos

.venv/.installed: pyproject.toml constraints.txt scripts/install.sh
	./scripts/install.sh
	touch $@

install: .venv/.installed

# The main job on the demo library shipped in samples/photos (or LIBRARY=~/Pictures): the
# configured model (ViT-B-32) when its weights can be had, else the built-in tiny model.
demo: install
	CLIPDEX_HOME=$(DEMO_HOME) ./scripts/demo.sh $(LIBRARY)

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	./scripts/services.sh
	$(VENV)/python -m pytest

bench: install
	$(VENV)/python -m bench.ingest_bench
	$(VENV)/python -m bench.store_bench
	$(VENV)/python -m bench.http_bench
	$(VENV)/python -m bench.worker_bench
