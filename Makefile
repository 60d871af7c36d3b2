# The two commands: `make up` runs the embedded stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: up test test-fast lint install install-test system-test-deps bench clean

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

lint: install-test
	$(VENV)/bin/ruff check .

bench: install-test
	$(PY) -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
