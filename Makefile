# Set-up and run targets for a fresh Debian machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 3000
# More gateway options for `make run`, e.g. ARGS="--host 127.0.0.1".
ARGS ?=
PYTEST_ARGS ?=
# Debian packages the test suite drives for real.
TEST_DEBS ?= python3-venv git openssl systemd procps tmux iproute2 dbus avahi-daemon avahi-utils chromium openssh-client openssh-server curl tor nodejs node-ws podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname prometheus redis-server

.PHONY: run test deps venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install -q --upgrade pip setuptools wheel

# The gateway and what it needs to run; `make run` installs nothing more.
$(VENV)/.installed-run: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e . --config-settings editable_mode=compat
	touch $@

# With the test extras, for `make test` and development.
$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

# Installs the Debian packages the tests need (as root, when any is missing).
deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

run: $(VENV)/.installed-run
	$(VENV)/bin/twistd --nodaemon --pidfile= wingman-gateway --port $(PORT) $(ARGS)

# Types first (mypy, config in setup.cfg), then every test.
test: deps venv
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/loadgen.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
