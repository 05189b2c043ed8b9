# The README's two commands:  `make repro`  and  `make test`.
# Each creates .venv and installs the project into it when that is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands call `python` and `dvc`: make them the virtualenv's.
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-fast profile-quick profile-paper ui

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Offline: `make repro CIFAR10=/path/to/cifar-10-python.tar.gz` (or an image-folder tree / .tar.gz)
CIFAR10 ?=

repro: $(STAMP)
ifdef CIFAR10
	dvc exp run -S 'cifar10.source=$(abspath $(CIFAR10))'
else
	dvc repro
endif

test: $(STAMP)
	python -m pytest

test-fast: $(STAMP)
	python -m pytest -m "not slow"

profile-quick profile-paper: profile-%:
	cp profiles/$*.yaml params.yaml
	@echo "params.yaml is now the $* profile; 'dvc params diff' shows what changed"

ui: $(STAMP)
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db
