# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# 8 simulated CPU devices so meshes are real in the tests.
TEST_ENV := XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu
DEMO_DIR ?= runs/demo

.PHONY: demo test venv clean

# The venv is rebuilt when requirements.txt, pyproject.toml or setup.py is newer than the stamp.
$(STAMP): requirements.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m mmjax.demo --workdir=$(DEMO_DIR)

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist=loadfile --durations=25 tests

clean:
	rm -rf $(VENV) runs
