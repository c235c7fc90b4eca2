# ChiOps: the two commands a user needs are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# `make` alone sets up .venv (the pinned dependencies and the `chiops` command), then lists the targets.
.DEFAULT_GOAL := install

VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule scenarios to run (default: every role that has one), e.g. `make molecule ROLES="base firewall"`.
ROLES ?= $(sort $(patsubst roles/%/molecule/default/molecule.yml,%,$(wildcard roles/*/molecule/default/molecule.yml)))

.PHONY: install help venv molecule-host kube-apiserver image image-push servers-host lint pytest pytest-shared \
	pytest-quiet molecule test demo bench clean

install: venv
	@echo "chiops installed: $(VENV)/bin/chiops (source $(VENV)/bin/activate; chiops --help)"
	@$(MAKE) --no-print-directory help

help:
	@echo "make        - set up .venv: the pinned dependencies and the chiops command"
	@echo "make demo   - run the whole pipeline on this machine (inventories/local); KEEP=1 leaves it running"
	@echo "make test   - every test: lint, pytest, and each role's Molecule scenario"
	@echo "make lint   - ruff, yamllint, ansible-lint (production profile), actionlint, secret scan (tree + history)"
	@echo "make bench  - benchmarks in bench/ (ratios measured in one run)"
	@echo "make image  - the serving image (podman, cached on the hash of its inputs)"
	@echo "make image-push IMAGE_REGISTRY=host:port - push it, print its reference by digest"

venv:
	@tools/venv.sh $(VENV)

molecule-host:
	@tools/molecule-host.sh

# kube-apiserver + kubectl built from Debian's source package for tests/kube (cold ~10+ min, then cached).
kube-apiserver:
	@nice -n 10 tools/kube-apiserver.sh >/dev/null

# podman and the Debian base image come from molecule-host
image: venv molecule-host
	@tools/image.sh >/dev/null

# e.g. make image-push IMAGE_REGISTRY=registry.example.org:5000 (prints the reference by digest)
image-push: venv molecule-host
	@tools/image-push.sh "$(IMAGE_REGISTRY)" $(PUSH_OPTS)

# Debian's PostgreSQL and Prometheus (with promtool), for the tests that start their own throwaway servers.
servers-host:
	@tools/servers-host.sh

lint: venv
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint --offline --profile production
	actionlint .github/workflows/*.yml
	python tools/secret_scan.py

pytest: venv kube-apiserver servers-host
	python -m pytest

# The tests that judge live latency (marker `quiet`) and the rest, for `make test`.
pytest-shared: venv kube-apiserver servers-host
	python -m pytest -m "not quiet"

pytest-quiet: venv
	python -m pytest -m quiet

molecule: venv molecule-host
	@tools/molecule-all.sh $(ROLES)

# Molecule mostly waits on package installs in containers, so it runs beside the tests that judge no latency;
# the tests that do (the demo, the live gates and rollouts, the serving load tests) run after, alone. Every part
# runs even when an earlier one failed, so one run reports every failure. The two parallel parts print as they
# go (interleaved), since make's output sync would hold each part's output until it ends. The API server's cold
# build (~7 min of compiling) is pytest-shared's own prerequisite, so it overlaps Molecule's package installs.
test: lint molecule-host image servers-host
	@status=0; \
	$(MAKE) --no-print-directory -k -j2 pytest-shared molecule || status=1; \
	$(MAKE) --no-print-directory pytest-quiet || status=1; \
	exit $$status

demo: venv
	@tools/demo.sh

bench: venv
	@tools/bench.sh

clean:
	rm -rf .pytest_cache .ruff_cache reports runs
