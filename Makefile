# The two commands of the README, and the pieces they are made of.
#   make lab    lab hosts up, site.yml on them, URLs printed (the main job)
#   make test   the whole suite: lint, sanity, unit, molecule, lab cluster
#   make check  the quick tier: every test that needs no lab host
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
LAB_INVENTORY ?= inventories/lab
# A second lab beside the first: SCALECORP_LAB_NAME=dev make lab (containers dev-lab-*,
# its own fact cache; its own secrets only with its own LAB_INVENTORY copy).
export SCALECORP_LAB_NAME ?= lab
export ANSIBLE_CACHE_PLUGIN_CONNECTION := $(CURDIR)/.cache/$(if $(filter lab,$(SCALECORP_LAB_NAME)),facts,facts-$(SCALECORP_LAB_NAME))
AIRFLOW_VERSION ?= 3.3.2

.PHONY: lab test check bootstrap lab-up lab-down lab-status lint unit docs lock collection

lab: bootstrap lab-up
	ansible-playbook -i $(LAB_INVENTORY) site.yml
	@python tools/lab.py summary --inventory $(LAB_INVENTORY)

test: bootstrap
	python -m pytest

check: bootstrap
	python -m pytest -m "not wip and (unit or lint or controller)"

bootstrap:
	@tools/bootstrap.sh

lab-up: bootstrap
	python tools/lab.py up --inventory $(LAB_INVENTORY)
	python tools/wheelhouse.py $(AIRFLOW_VERSION) >/dev/null

lab-down:
	python tools/lab.py down

lab-status:
	python tools/lab.py status

lint: bootstrap
	python -m pytest -m lint

unit: bootstrap
	python -m pytest -m unit

docs: bootstrap
	python tools/gen_variables_doc.py
	python tools/gen_collection_readme.py

# Regenerate the full pinned toolchain from requirements.in (needs PyPI).
lock:
	rm -rf .cache/lock-venv && python3 -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet -r requirements.in
	{ echo '# Full pinned controller toolchain (python 3.11), generated from requirements.in by `make lock`.'; \
	  .cache/lock-venv/bin/pip freeze; } > requirements.txt

collection: bootstrap
	ansible-galaxy collection build --force --output-path .cache collections/ansible_collections/scalecorp/airflow
