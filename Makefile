# Vantage — the two commands of the README, and the steps they are made of.
#   make quickstart   set up this machine and run the main job on the local sandbox
#   make test         set up this machine and run every test (sanity, lint, units, Molecule)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOP := $(abspath .)
VENV := $(TOP)/.venv
PYTHON ?= python3
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(TOP)/build/collections
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
MOLECULE_SCENARIOS ?= $(sort $(notdir $(wildcard molecule/*)))

.PHONY: help quickstart test setup venv prereqs engine images collection-link \
        sanity lint units pylint-src pytest plugin-units molecule clean

help:
	@echo "make quickstart  - set up this machine and deploy the local sandbox"
	@echo "make test        - set up this machine and run every test"
	@echo "make molecule MOLECULE_SCENARIOS=docker_host - run chosen Molecule scenarios"

setup: prereqs venv engine images collection-link

prereqs:
	@tests/setup/host-prereqs.sh

$(VENV)/.installed: requirements-dev.txt requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

engine: prereqs
	@tests/setup/ensure-engine.sh

images: engine
	@tests/images/build-base-images.sh

# Playbooks and Molecule find the collection as vantage.checkpoint through this link.
collection-link:
	@mkdir -p build/collections/ansible_collections/vantage
	@ln -sfn $(TOP) build/collections/ansible_collections/vantage/checkpoint

sanity: venv
	@echo "== ansible-test sanity"
	@tests/setup/ansible-test.sh sanity --venv --python 3.11 --color no

lint: venv collection-link
	@echo "== ansible-lint (production profile)"
	@ansible-lint --offline -q

units: pylint-src pytest plugin-units

# The reference agent / control plane package: ruff and strict mypy (ansible-test covers the
# collection's own content; see docs/testing.md).
pylint-src: venv
	@echo "== ruff + mypy (src/vantage)"
	@$(VENV)/bin/ruff check $(wildcard src tests/conftest.py tests/unit/vantage tests/integration benchmarks)
	@$(VENV)/bin/mypy

pytest: venv
	@echo "== pytest (src/vantage: unit and integration)"
	@$(VENV)/bin/pytest -q -p no:cacheprovider -ra

plugin-units: venv
	@if compgen -G 'tests/unit/plugins/**/test_*.py' >/dev/null || compgen -G 'tests/unit/plugins/*/*/test_*.py' >/dev/null; then \
	  echo "== ansible-test units"; \
	  tests/setup/ansible-test.sh units --venv --python 3.11 --color no; \
	else echo "== ansible-test units: no plugin unit tests yet"; fi

molecule: setup
	@for s in $(MOLECULE_SCENARIOS); do \
	  echo "== molecule test -s $$s"; \
	  start=$$(date +%s); \
	  molecule test -s $$s; \
	  echo "== molecule $$s passed in $$(( $$(date +%s) - start )) s"; \
	done

test: export VANTAGE_REQUIRE_DOCKER := 1
test:
	@start=$$(date +%s); \
	status=0; \
	$(MAKE) --no-print-directory setup sanity lint units molecule || status=$$?; \
	echo "== make test wall time: $$(( $$(date +%s) - start )) s (exit $$status)"; \
	exit $$status

quickstart: setup
	@echo "The machine is set up (engine, base images, tools in .venv)."
	@echo "The sandbox deployment (control plane + paired checkpoint) is not implemented yet;"
	@echo "see docs/roadmap.md. Nothing else was changed."

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
