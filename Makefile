# `make run` and `make test` install whatever is missing first (virtualenv, Python and Debian packages).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install apt lint bench clean docs

run: install
	$(BIN)/python manage.py runplatform

# Unit tests run on TEST_WORKERS processes (pytest-xdist; `auto`: one per core, 0: in this process), each
# with its own test database and DATA_DIR; integration tests then run as a phase of their own on
# TEST_INTEGRATION_WORKERS processes (default 2; 0: in this process), a module at a time per worker and the
# longest modules first (tests/integration/conftest.py); the topology module last, alone. Run beside unit
# tests in one xdist run, the integration workers' and crawls' late writes reached other workers' databases.
# Every part always runs; any failing fails the target. PYTEST_ARGS given: one plain run of just those.
TEST_WORKERS ?= auto
TEST_INTEGRATION_WORKERS ?= 2
# The scale-out topology (nginx, 2 webs, 2 workers, beat, 3 Scrapyd nodes, PostgreSQL, Redis, S3) takes both
# cores for ~5 minutes: run beside other tests, it made their pages' and crawls' timings the topology's.
# It runs last, alone.
TOPOLOGY_TESTS := tests/integration/test_topology.py

test: install
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit; unit=$$?; \
	$(BIN)/python -m pytest -n $(TEST_INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder tests/integration \
		--ignore=$(TOPOLOGY_TESTS); integration=$$?; \
	$(BIN)/python -m pytest $(TOPOLOGY_TESTS); topology=$$?; \
	test $$unit = 0 && test $$integration = 0 && test $$topology = 0
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

install: apt $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

# Installs the Debian packages listed in deploy/apt-packages.txt that are not installed yet.
apt:
	@missing=$$(grep -v '^\s*#' deploy/apt-packages.txt | xargs -r -n1 sh -c 'dpkg -s "$$0" >/dev/null 2>&1 || echo "$$0"'); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: install
	$(BIN)/ruff check .

# Each benchmark compares against a baseline in the same run and rewrites its section of docs/benchmarks.md.
bench: install
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/crawl.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/admin_pages.py
	$(BIN)/python bench/scale.py

docs: install
	$(BIN)/python manage.py apireference --output docs/api.md

clean:
	rm -rf $(VENV) var .pytest_cache
