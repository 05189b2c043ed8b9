# The README's two commands:  `make repro`  and  `make test`.
# Each creates .venv and installs the project into it when that is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands call `python` and `dvc`: make them the virtualenv's.
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-fast profile-quick profile-paper profile-paper-cpu profile-atlas ui gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Offline: `make repro CIFAR10=/path/to/cifar-10-python.tar.gz` (or its folder, an image-folder
# tree or a .tar.gz of one). The copy's bytes become data/raw/cifar10 (DVC hashes them): the same
# file at another path reruns nothing, and the path enters no tracked file.
# The paper's published results (compare@<arch>) likewise: NADS_PUBLISHED=/path/to/nads-published-2020.tar.gz
# (or a checkout of the authors' repository); every file is checked against its recorded sha256.
CIFAR10 ?=
NADS_PUBLISHED ?=

repro: $(STAMP)
ifdef CIFAR10
	CIFAR10='$(abspath $(CIFAR10))' dvc repro --force --single-item fetch@cifar10
endif
ifdef NADS_PUBLISHED
	NADS_PUBLISHED='$(abspath $(NADS_PUBLISHED))' dvc repro --force --single-item --glob 'reference@*'
endif
	dvc repro

test: $(STAMP)
	python -m pytest

test-fast: $(STAMP)
	python -m pytest -m "not slow"

# On a GPU machine (issue #14): correctness against the CPU, throughput, paper-profile hours; ~6 minutes.
gpu-check: $(STAMP)
	PYTHONPATH=. python benchmarks/gpu_check.py --out results/gpu_check

profile-quick profile-paper profile-paper-cpu profile-atlas: profile-%:
	cp profiles/$*.yaml params.yaml
	@echo "params.yaml is now the $* profile; 'dvc params diff' shows what changed"

# The runs of experiment nads in MLflow's UI (make ui UI_PORT=5001: another port). Open the
# printed address: MLflow 3's UI opens an experiment in its GenAI (traces) view otherwise.
# One local user: one worker, no telemetry, no GenAI job runner (it starts 8 more processes).
UI_PORT ?= 5000
ui: $(STAMP)
	@echo "MLflow UI, the runs of experiment nads: $$(python -m nads.tracking ui-url $(UI_PORT))"
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port $(UI_PORT) --workers 1
