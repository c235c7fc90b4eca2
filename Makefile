# ChiOps: the two commands a user needs are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule scenarios to run (default: every role that has one), e.g. `make molecule ROLES="base firewall"`.
ROLES ?= $(sort $(patsubst roles/%/molecule/default/molecule.yml,%,$(wildcard roles/*/molecule/default/molecule.yml)))

.PHONY: help venv molecule-host postgres-host lint pytest molecule test demo bench clean

help:
	@echo "make demo   - run the whole pipeline on this machine (inventories/local); KEEP=1 leaves it running"
	@echo "make test   - every test: lint, pytest, and each role's Molecule scenario"
	@echo "make lint   - ruff, yamllint, ansible-lint (production profile), actionlint"
	@echo "make bench  - benchmarks in bench/ (ratios measured in one run)"

venv:
	@tools/venv.sh $(VENV)

molecule-host:
	@tools/molecule-host.sh

# Debian's PostgreSQL server, for the feedback-store tests (they start their own throwaway servers).
postgres-host:
	@tools/postgres-host.sh

lint: venv
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint --offline --profile production
	actionlint .github/workflows/ci.yml

pytest: venv postgres-host
	python -m pytest

molecule: venv molecule-host
	@tools/molecule-all.sh $(ROLES)

test: lint pytest molecule

demo: venv
	@tools/demo.sh

bench: venv
	@tools/bench.sh

clean:
	rm -rf .pytest_cache .ruff_cache reports runs
