# The README's two commands:  `make repro`  and  `make test`.
# Each creates .venv when it is missing and installs exactly the lock into it: requirements/main.txt
# for the pipeline, requirements/test.txt (main + ray, timm, pytest...) for the tests, and with
# `make install-team` requirements/team.txt (PostgreSQL client, S3 and SSH remotes). Every package
# is pinned with its hashes (`make lock` writes them; `make lock-check` says whether they are stale).
# NADS_VENV=0 uses the Python environment already there (the container's) and installs nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
UV     := uv==0.13.9
# Stage commands call `python` and `dvc`: make them the virtualenv's.
export PATH := $(BIN):$(PATH)

.PHONY: install install-test install-team repro test test-all test-fast lint lock lock-check profile-quick profile-paper profile-paper-cpu profile-atlas ui gpu-check

ifeq ($(NADS_VENV),0)
MAIN :=
TEST :=
else
MAIN := $(VENV)/.installed-main
TEST := $(VENV)/.installed-test
TEAM := $(VENV)/.installed-team
endif

install: $(MAIN)
install-test: $(TEST)
install-team: $(TEAM)

$(VENV)/bin/python:
	@echo "creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

# pip checks every file against the lock's hashes; nads itself (editable) is built with the
# locked setuptools, so nothing is fetched beyond the lock.
define install_lock
	@echo "installing $(1) into $(VENV) (about 3 minutes the first time: torch is 900 MB)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(1)
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
endef

# DVC's SSH remote accepts any host key unless told otherwise: requirements/nads_ssh_known_hosts.py
# makes it check ~/.ssh/known_hosts in every Python of this environment.
$(VENV)/.installed-main: requirements/main.txt requirements/nads_ssh_known_hosts.py pyproject.toml | $(VENV)/bin/python
	$(call install_lock,requirements/main.txt)
	site="$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
	  && cp requirements/nads_ssh_known_hosts.py "$$site/" && echo "import nads_ssh_known_hosts" > "$$site/nads-ssh-known-hosts.pth"
	touch $@

$(VENV)/.installed-test: requirements/test.txt $(VENV)/.installed-main
	$(call install_lock,requirements/test.txt)
	touch $@

$(VENV)/.installed-team: requirements/team.txt $(VENV)/.installed-main
	$(call install_lock,requirements/team.txt)
	touch $@

# The locks, from pyproject.toml (whose ranges stay, for people who use nads as a library),
# requirements/pins.txt and build.in: for Linux x86-64 and Python 3.11, where results are the
# same bit for bit on any CPU (nads/portable.py); PyPI's builds (torch's is the CUDA build).
# Versions already locked are kept unless the inputs exclude them (UPGRADE=1: newest allowed).
LOCK_ARGS = --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
	$(if $(UPGRADE),--upgrade)
define compile_locks
	cd $(1) && $(BIN)/uv pip compile $(LOCK_ARGS) pyproject.toml requirements/build.in -c requirements/pins.txt \
	  -o requirements/main.txt
	cd $(1) && $(BIN)/uv pip compile $(LOCK_ARGS) pyproject.toml requirements/build.in --extra team --extra s3 --extra ssh \
	  -c requirements/main.txt -o requirements/team.txt
	cd $(1) && $(BIN)/uv pip compile $(LOCK_ARGS) pyproject.toml requirements/build.in --extra test \
	  -c requirements/main.txt -c requirements/team.txt -o requirements/test.txt
endef

$(BIN)/uv: | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(UV)'

lock: $(BIN)/uv
	$(call compile_locks,.)
	$(BIN)/python -m nads.environment versions

# CI: the locks must be what `make lock` writes from today's inputs (pyproject.toml, pins, build.in),
# compiled in a copy so that the committed files stay as they are.
lock-check: $(BIN)/uv
	@rm -rf .nads/lock-check && mkdir -p .nads/lock-check && cp -r pyproject.toml README.md requirements .nads/lock-check/
	$(call compile_locks,.nads/lock-check)
	@diff -u requirements/main.txt .nads/lock-check/requirements/main.txt \
	  && diff -u requirements/team.txt .nads/lock-check/requirements/team.txt \
	  && diff -u requirements/test.txt .nads/lock-check/requirements/test.txt \
	  || { echo "error: requirements/*.txt are stale: run make lock and commit them" >&2; exit 1; }
	@$(BIN)/python -c "import sys; from nads.environment import versions_text, VERSIONS; \
	  sys.exit(0 if VERSIONS.read_text() == versions_text() else 'error: requirements/versions.yaml is stale: run make lock')"
	@echo "the locks are up to date"

# Offline: `make repro CIFAR10=/path/to/cifar-10-python.tar.gz` (or its folder, an image-folder
# tree or a .tar.gz of one). The copy's bytes become data/raw/cifar10 (DVC hashes them): the same
# file at another path reruns nothing, and the path enters no tracked file.
# The paper's published results (compare@<arch>) likewise: NADS_PUBLISHED=/path/to/nads-published-2020.tar.gz
# (or a checkout of the authors' repository); every file is checked against its recorded sha256.
CIFAR10 ?=
NADS_PUBLISHED ?=

repro: $(MAIN)
ifdef CIFAR10
	CIFAR10="$$(realpath -m -- '$(CIFAR10)')" dvc repro --force --single-item fetch@cifar10
endif
ifdef NADS_PUBLISHED
	NADS_PUBLISHED="$$(realpath -m -- '$(NADS_PUBLISHED)')" dvc repro --force --single-item --glob 'reference@*'
endif
	dvc repro
	@python -m nads.report

# One test process per core (pytest-xdist); tests/conftest.py orders and groups them.
# make test: the default run, what CI runs (400 tests, 652 s on 2 cores). make test-all adds the
# `long` tier, the end-to-end runs against outside processes (emulated CPUs, a Ray cluster,
# PostgreSQL, mlflow, S3 and SSH servers): 710-834 s at 408 tests. make test-fast: neither `slow` nor `long`.
test: $(TEST)
	python -m pytest -n auto --dist loadgroup -m "not long"

test-all: $(TEST)
	python -m pytest -n auto --dist loadgroup

test-fast: $(TEST)
	python -m pytest -n auto --dist loadgroup -m "not slow and not long"

# The linter, the formatter (ruff) and the type checker on nads/ (mypy; settings in
# pyproject.toml); CI runs this before the tests. `ruff format .` and `ruff check --fix .`
# repair what ruff reports.
lint: $(TEST)
	ruff check .
	ruff format --check .
	mypy

# On a GPU machine: correctness against the CPU, throughput, paper-profile hours; ~6 minutes.
gpu-check: $(MAIN)
	PYTHONPATH=. python benchmarks/gpu_check.py --out results/gpu_check

profile-quick profile-paper profile-paper-cpu profile-atlas: profile-%:
	cp profiles/$*.yaml params.yaml
	@echo "params.yaml is now the $* profile; 'dvc params diff' shows what changed"

# The runs of experiment nads in MLflow's UI (make ui UI_PORT=5001: another port), on the store the
# stages log to: the repository's mlflow.db, or MLFLOW_TRACKING_URI's (a tracking server has its
# own UI: its address is printed). Open the printed address: it asks for MLflow 3's model-training
# view. In a container: UI_HOST=0.0.0.0 (the image's default) so that a published port answers.
UI_PORT ?= 5000
UI_HOST ?= 127.0.0.1
ui: $(MAIN)
	python -m nads.ui --host $(UI_HOST) --port $(UI_PORT)
