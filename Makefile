# Vantage — the two commands of the README, and the steps they are made of.
#   make quickstart   set up this machine and run the main job on the local sandbox
#   make test         set up this machine and run every test (sanity, lint, units, Molecule)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOP := $(abspath .)
VENV := $(TOP)/.venv
PYTHON ?= python3
# PostgreSQL server binaries (initdb, pg_ctl) for the control plane's PostgreSQL test; `make test`
# runs the tests in a second make, after `setup` has installed them.
PG_BINDIR := $(firstword $(wildcard /usr/lib/postgresql/*/bin))
export PATH := $(VENV)/bin:$(PATH)$(if $(PG_BINDIR),:$(PG_BINDIR))
export ANSIBLE_COLLECTIONS_PATH := $(TOP)/build/collections
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
MOLECULE_SCENARIOS ?= $(sort $(notdir $(wildcard molecule/*)))

.PHONY: help quickstart test setup venv prereqs engine images app-images collection-link sandbox-destroy bench \
        ee sanity lint galaxy-importer units pylint-src pytest plugin-units molecule clean

help:
	@echo "make quickstart  - set up this machine and deploy the local sandbox"
	@echo "make test        - set up this machine and run every test"
	@echo "make molecule MOLECULE_SCENARIOS=docker_host - run chosen Molecule scenarios"
	@echo "make sandbox-destroy - remove the sandbox hosts"
	@echo "make bench       - print the agent benchmark figures"

setup: prereqs venv engine images app-images ee collection-link

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

# vantage/checkpoint and vantage/control-plane on the local Debian base; reused when unchanged.
app-images: images venv
	@VANTAGE_BASE_IMAGE=vantage-test/debian12:bookworm images/build.sh

# The execution environment vantage/ee:<version> from execution-environment.yml (ansible-builder), on
# the local Debian base unless EE_BASE_IMAGE names another (docs/awx.md); the AWX-style runs of the
# playbooks in it are tests/integration/test_execution_environment.py.
EE_BASE_IMAGE ?= vantage-test/debian12:bookworm
ee: images venv
	@$(VENV)/bin/python images/ee/build.py --base-image $(EE_BASE_IMAGE)

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

# The built artifact as Galaxy imports it: ansible-doc of every plugin and role, ansible-lint,
# the changelog; any warning fails (tests/setup/galaxy-importer.cfg, docs/testing.md).
galaxy-importer: venv
	@echo "== galaxy-importer (the built collection artifact)"
	@tests/setup/galaxy-importer.sh

units: pylint-src pytest plugin-units

# The reference agent / control plane package: ruff and strict mypy (ansible-test covers the
# collection's own content; see docs/testing.md).
pylint-src: venv
	@echo "== ruff + mypy (src/vantage)"
	@$(VENV)/bin/ruff check $(wildcard src tests/conftest.py tests/unit/vantage tests/integration benchmarks images/ee)
	@$(VENV)/bin/mypy
	@shellcheck images/build.sh .ci/run

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

test: export VANTAGE_NO_SKIP := 1
test:
	@start=$$(date +%s); \
	status=0; \
	{ $(MAKE) --no-print-directory setup && $(MAKE) --no-print-directory sanity lint galaxy-importer units molecule; } || status=$$?; \
	echo "== make test wall time: $$(( $$(date +%s) - start )) s (exit $$status)"; \
	exit $$status

quickstart: setup
	@start=$$(date +%s); \
	ansible-playbook -i inventories/sandbox playbooks/sandbox.yml; \
	echo "== sandbox deployed in $$(( $$(date +%s) - start )) s; the control plane listens on" \
	     "https://$$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' vantage-sandbox-cp):8443" \
	     "(CA: /etc/vantage/control-plane/tls/ca.crt in vantage-sandbox-cp;" \
	     "admin token: inventories/sandbox/.secrets/admin-token)"

# Prints the agent's idle RSS, checks/s, dispatch-to-result latency and failover time (not a test).
bench: venv
	@$(VENV)/bin/python benchmarks/bench_agent.py

sandbox-destroy:
	@docker ps -aq --filter label=io.vantage.sandbox=true | xargs -r docker rm -f >/dev/null
	@docker network rm vantage-sandbox >/dev/null 2>&1 || true
	@echo "sandbox removed"

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
