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
# Ansible's own state per checkout (temporary files, the collection ansible-lint installs from this
# tree): another checkout on the same machine must never lend it its copy of vantage.checkpoint.
export ANSIBLE_HOME := $(TOP)/build/ansible-home
# Async jobs (the sandbox's image copies) and async_status must agree on the directory even when
# HOME is not the account's home directory (async_status expands ~ from the password database).
export ANSIBLE_ASYNC_DIR := $(ANSIBLE_HOME)/async
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
MOLECULE_SCENARIOS ?= $(sort $(notdir $(wildcard molecule/*)))

.PHONY: help quickstart test setup venv prereqs prereqs-sandbox engine images app-images collection-link sandbox-destroy bench bench-peer bench-cp \
        ee sanity lint galaxy-importer units pylint-src pytest plugin-units windows-tests molecule clean

help:
	@echo "make quickstart  - set up this machine and deploy the local sandbox"
	@echo "make test        - set up this machine and run every test"
	@echo "make molecule MOLECULE_SCENARIOS=egress - run chosen Molecule scenarios"
	@echo "make sandbox-destroy - remove the sandbox hosts"
	@echo "make bench       - print the agent benchmark figures (real control plane)"
	@echo "make bench-peer  - compare the agent with Prometheus blackbox_exporter (PROFILE=file adds a py-spy profile)"
	@echo "make bench-cp    - print the control plane load figures (1,000 and 5,000 sessions)"

# Everything `make test` needs; `make quickstart` needs less (no test servers, no execution environment).
setup: prereqs venv engine images app-images ee collection-link

prereqs:
	@tests/setup/host-prereqs.sh test

prereqs-sandbox:
	@tests/setup/host-prereqs.sh sandbox

$(VENV)/.installed: requirements-dev.txt requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

engine: prereqs-sandbox
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

# validate-modules reads a PowerShell module's argument spec by running it with pwsh, which cannot
# be installed here: it stops instead of checking anything. So it runs on every module file but the
# .ps1 ones (their .py documentation included), which tests/windows checks instead; every other
# sanity test runs on everything (docs/testing.md).
PS_MODULES := $(wildcard plugins/modules/*.ps1)
sanity: venv
	@echo "== ansible-test sanity"
	@tests/setup/ansible-test.sh sanity --venv --python 3.11 --color no $(if $(PS_MODULES),--skip-test validate-modules)
	@if [ -n "$(PS_MODULES)" ]; then \
	  echo "== ansible-test sanity --test validate-modules: every module file but the .ps1 ones (no pwsh here)"; \
	  tests/setup/ansible-test.sh sanity --venv --python 3.11 --color no --test validate-modules \
	    $(filter-out %.ps1,$(wildcard plugins/modules/*)); \
	fi

lint: venv collection-link
	@echo "== ansible-lint (production profile)"
	@ansible-lint --offline -q

# The built artifact as Galaxy imports it: ansible-doc of every plugin and role, ansible-lint,
# the changelog; any warning fails (tests/setup/galaxy-importer.cfg, docs/testing.md).
galaxy-importer: venv
	@echo "== galaxy-importer (the built collection artifact)"
	@tests/setup/galaxy-importer.sh

units: pylint-src pytest plugin-units windows-tests

# The reference agent / control plane package: ruff and strict mypy (ansible-test covers the
# collection's own content; see docs/testing.md).
pylint-src: venv
	@echo "== ruff + mypy (src/vantage)"
	@$(VENV)/bin/ruff check $(wildcard src tests/conftest.py tests/support tests/unit/vantage tests/integration tests/windows benchmarks images/ee)
	@$(VENV)/bin/mypy
	@shellcheck images/build.sh images/build-windows-context.sh .ci/run

pytest: venv
	@echo "== pytest (src/vantage: unit and integration)"
	@$(VENV)/bin/pytest -q -p no:cacheprovider -ra

plugin-units: venv
	@if compgen -G 'tests/unit/plugins/**/test_*.py' >/dev/null || compgen -G 'tests/unit/plugins/*/*/test_*.py' >/dev/null; then \
	  echo "== ansible-test units"; \
	  tests/setup/ansible-test.sh units --venv --python 3.11 --color no; \
	else echo "== ansible-test units: no plugin unit tests yet"; fi

# Windows PowerShell cannot run here: every .ps1/.psm1 parsed with a PowerShell grammar, the Windows
# Dockerfile checked statically, the playbooks over a mixed inventory (docs/windows.md).
windows-tests: venv collection-link
	@echo "== Windows checks (PowerShell grammar, Dockerfile.windows, mixed inventory)"
	@$(VENV)/bin/pytest -q -p no:cacheprovider -ra tests/windows

# One scenario: `make molecule-default` (after `make setup`). molecule/windows needs a real Windows
# Server host (docs/windows.md); without one it does not run, and says so: that is never a pass.
molecule-%:
	@if [ "$*" = windows ] && [ -z "$${VANTAGE_WINDOWS_HOST:-}" ]; then \
	  echo "== molecule windows: NOT RUN - no Windows Server host given (set VANTAGE_WINDOWS_HOST and the"; \
	  echo "   other VANTAGE_WINDOWS_* variables, docs/windows.md); this is not a pass"; \
	  exit 0; \
	fi; \
	echo "== molecule test -s $*"; \
	start=$$(date +%s); \
	molecule test -s $*; \
	echo "== molecule $* passed in $$(( $$(date +%s) - start )) s"

molecule: setup
	@for s in $(MOLECULE_SCENARIOS); do $(MAKE) --no-print-directory molecule-$$s; done

# `make test`: the setup without the execution environment, then the stages in two lanes side by
# side (tests/setup/run-stages.sh; docs/testing.md): the EE build, the static checks, the unit and
# integration tests and the update scenario in one, the other Molecule scenarios in the other.
# Each stage's time and the total are printed; any failure fails the run.
TEST_LANES ?= "ee sanity lint galaxy-importer pylint-src plugin-units windows-tests pytest molecule-update" \
              "molecule-default molecule-egress$(if $(VANTAGE_WINDOWS_HOST), molecule-windows)"
test: export VANTAGE_NO_SKIP := 1
test:
	@start=$$(date +%s); \
	status=0; \
	{ $(MAKE) --no-print-directory prereqs venv engine images app-images collection-link \
	  && tests/setup/run-stages.sh $(TEST_LANES); } || status=$$?; \
	$(if $(VANTAGE_WINDOWS_HOST),,$(MAKE) --no-print-directory molecule-windows;) \
	echo "== make test wall time: $$(( $$(date +%s) - start )) s (exit $$status)"; \
	exit $$status

# Deploys the sandbox, then runs the same playbook again: the second run must change nothing.
# Prints both wall times and the second run's changed count (docs/deploy.md).
QUICKSTART_LOG := $(TOP)/build/quickstart
quickstart: prereqs-sandbox venv engine images app-images collection-link
	@mkdir -p $(QUICKSTART_LOG); \
	existed=$$(docker ps -aq --filter label=io.vantage.sandbox=true | wc -l); \
	for run in 1 2; do \
	  start=$$(date +%s); \
	  ansible-playbook -i inventories/sandbox playbooks/sandbox.yml | tee $(QUICKSTART_LOG)/run$$run.log; \
	  seconds[$$run]=$$(( $$(date +%s) - start )); \
	done; \
	changed=$$(awk '/^PLAY RECAP/ {recap = 1; next} recap && /changed=/ {for (i = 1; i <= NF; i++) if ($$i ~ /^changed=/) \
	           {split($$i, kv, "="); sum += kv[2]}} END {print sum + 0}' $(QUICKSTART_LOG)/run2.log); \
	echo "== quickstart: first run $${seconds[1]} s ($$( [ "$$existed" = 0 ] && echo 'bare sandbox to healthy pair' \
	     || echo 'the sandbox existed')), second run $${seconds[2]} s with changed=$$changed" \
	     "(logs: $(QUICKSTART_LOG)/run1.log, run2.log)"; \
	echo "== the control plane listens on" \
	     "https://$$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' vantage-sandbox-cp):8443" \
	     "(CA: /etc/vantage/control-plane/tls/ca.crt in vantage-sandbox-cp;" \
	     "admin token: inventories/sandbox/.secrets/admin-token)"

# Prints the agent's idle RSS, dispatch-to-result latency and failover time (not a test).
bench: venv
	@$(VENV)/bin/python benchmarks/bench_agent.py

# Checks/s, checks per CPU-second and RSS of the agent and of Debian's blackbox_exporter, each
# pinned to one core, against the same nginx (not a test; installs the three packages if missing).
BENCH_PEER_PACKAGES := nginx-light wrk prometheus-blackbox-exporter
bench-peer: venv
	@command -v nginx >/dev/null && command -v wrk >/dev/null && command -v prometheus-blackbox-exporter >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_PEER_PACKAGES); }
	@$(VENV)/bin/python benchmarks/bench_peer.py $(if $(PROFILE),--profile $(PROFILE))

# Sessions held, memory per session and dispatch-to-result latency of one control plane on one
# core, with SQLite and with PostgreSQL (not a test; several minutes).
bench-cp: venv
	@$(VENV)/bin/python benchmarks/bench_control_plane.py

sandbox-destroy:
	@docker ps -aq --filter label=io.vantage.sandbox=true | xargs -r docker rm -f >/dev/null
	@docker network rm vantage-sandbox >/dev/null 2>&1 || true
	@echo "sandbox removed"

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
