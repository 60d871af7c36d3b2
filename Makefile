# The two commands: `make up` runs the embedded stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: up test test-fast test-torch lint install install-test install-bench system-test-deps bench-deps bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-test-deps

# Debian packages some tests use (docker-compose config, ip netns, a headless browser for
# the dashboard's tests); installed when root.
system-test-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing"; \
	  fi; \
	fi

up: install
	$(VENV)/bin/computethis up $(ARGS)

test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(ARGS)

# Unit and integration tests only (no cluster, no separate processes): under a minute.
test-fast: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not system" $(ARGS)

# PyTorch models through the real stack (docs/models.md). Not in `make test`: torch from
# PyPI pulls several GB of CUDA packages. A CPU build from elsewhere:
# make test-torch TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_SPEC ?= torch
TORCH_PIP_ARGS ?=
test-torch: install-test
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	COMPUTETHIS_TEST_TORCH=1 $(PY) -m pytest tests/torch $(ARGS)

lint: install-test
	$(VENV)/bin/ruff check .

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

install-bench: $(VENV)/.installed-bench bench-deps

# An MPI for the SPMD benchmark's mpi4py comparator; installed when root.
bench-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null && ! command -v mpirun >/dev/null; then \
	  echo "apt-get install openmpi-bin libopenmpi-dev"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null) \
	    || echo "warning: could not install openmpi; the mpi4py comparator is left out"; \
	fi

bench: install-bench
	$(PY) -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
