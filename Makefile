# epilot_outlook: the two commands of README.md, and the pieces they are made of.
#   make run    set everything up, start the Microsoft 365 sandbox demo and Odoo at http://127.0.0.1:8069
#   make test   set everything up, run the Odoo-free suite and (when Odoo 19 is found) the Odoo suite
# Knobs: VENV (.venv), PYTHON (python3.11), ODOO_SRC (default /opt/odoo19), ODOO_HTTP_PORT (8069).
# Each step is idempotent and keyed on stamps, so a second run only does what changed. The logic lives
# in scripts/ (lib.sh is shared).

VENV ?= .venv
export VENV       # the others reach scripts/ as they came: from the environment or the command line

.PHONY: help run test test-core setup

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

run:
	@scripts/run_demo.sh

test:
	@scripts/run_tests.sh

# PostgreSQL (when Odoo is found) and the venv, nothing else.
setup:
	@bash -c 'source scripts/lib.sh; find_odoo; [ -z "$$ODOO_SRC" ] || ensure_system; ensure_venv; say "set up$${ODOO_SRC:+ with Odoo at $$ODOO_SRC}"'

# The Odoo-free suite alone, for a quick loop.
test-core:
	@bash -c 'source scripts/lib.sh; ODOO_SRC=; ensure_venv; exec "$$VENV/bin/python" -m pytest tests -q'
