# The two commands of the README: `make demo` (the main job on embedded defaults) and
# `make test` (everything CI runs). Both install into .venv first.
.PHONY: install demo test lint bench

VENV := .venv/bin
DEMO_HOME ?= .clipdex-demo
DEMO_LIBRARY ?= ../shared/corpus/photos

.venv/.installed: pyproject.toml constraints.txt scripts/install.sh
	./scripts/install.sh
	touch $@

install: .venv/.installed

# Offline smoke run: the built-in tiny model has random weights (labelled so in every output).
# With real weights: CLIPDEX_PRETRAINED=/path/to/open_clip_pytorch_model.bin clipdex ingest ...
demo: install
	CLIPDEX_HOME=$(DEMO_HOME) CLIPDEX_MODEL=clipdex-tiny $(VENV)/clipdex ingest $(DEMO_LIBRARY)
	CLIPDEX_HOME=$(DEMO_HOME) CLIPDEX_MODEL=clipdex-tiny $(VENV)/clipdex search "a dog on the beach" --limit 5
	CLIPDEX_HOME=$(DEMO_HOME) CLIPDEX_MODEL=clipdex-tiny $(VENV)/clipdex status

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
