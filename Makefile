# Two commands for a new user: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PORT ?= 6379
APT_TEST_PACKAGES := redis-server redis-tools prometheus-redis-exporter prometheus gcc python3-dev

.PHONY: run test install install-test bench clean docker

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

install: $(VPY)
	$(VPY) -m pip install -q -e .

run: install
	$(VENV)/bin/predis-server conf/predis.conf --port $(PORT)

# Debian's redis-server/redis-tools drive the differential and client tests; gcc and the
# Python headers build the C fast path (predis_server/_fastpath.c), which the tests check.
install-test: install
	@if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
			|| ! command -v gcc >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_TEST_PACKAGES); \
	fi
	$(VPY) -m pip install -q -e '.[test,workloads]'

# pytest exits 5 when it collects nothing: that must fail, not pass silently.
test: install-test
	$(VPY) -m pytest -q -ra tests

bench: install-test
	$(VPY) bench/vs_redis.py

docker:
	docker build -t predis .

clean:
	rm -rf $(VENV) build *.egg-info
