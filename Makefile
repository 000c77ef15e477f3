# The two commands of the README: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
# uv from PATH, else a private copy in .tools/ (pip is all a fresh machine is assumed to have).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test install install-system install-browser install-mail install-web lint typecheck test-sqlite test-postgres messages

.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

# Installed precompiled (--compile-bytecode): where the environment sets PYTHONDONTWRITEBYTECODE,
# every process `mimamori run` starts would otherwise compile what it imports again.
install: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --compile-bytecode

## Start the whole system on this machine with demo data (embedded mode), on http://127.0.0.1:$(PORT)/.
## Another PORT is another demo beside it: its own data in ./var/port-$(PORT), its own mailbox.
PORT ?= 8000
run: install
	$(UV) run mimamori run --demo --port=$(PORT)

## Install everything the tests need, then lint, type-check and run the suite on SQLite and PostgreSQL.
test: install install-system lint typecheck test-sqlite test-postgres

# The Debian packages the tests run (as root, on Debian or Ubuntu).
install-system: install-browser install-mail install-web

# Debian's Chromium for the Playwright tests (no browser download), and a Japanese font for screenshots.
install-browser:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi ipagothic; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic >/dev/null; \
	fi

# Debian's Postfix, which tests/test_postfix.py runs as the relay (a private instance of its own),
# and SpamAssassin, which scores every kind of mail (tests/test_spamassassin.py). Postfix is set up
# as "No configuration": no system mail server is configured or started, nothing listens on port 25.
# No recommends: they would add spamd, a daemon the tests do not use.
install-mail:
	@if [ ! -x /usr/sbin/postfix ] || ! command -v spamassassin >/dev/null; then \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			postfix spamassassin >/dev/null; \
	fi

# Debian's nginx, which tests/test_deploy.py runs (a private instance, its own ports and files) in
# front of the web server exactly as deploy/nginx/mimamori.conf configures it. Debian starts the
# package's own nginx (its default site on port 80) where services may start; containers,
# like CI's, do not.
install-web:
	@if [ ! -x /usr/sbin/nginx ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			nginx >/dev/null; \
	fi

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports

typecheck:
	$(UV) run mypy mimamori tests bench

# Each suite runs in TEST_PROCESSES processes (pytest-xdist; auto: one per CPU), a file's tests in
# one process in order (its module-scoped fixtures, such as the demo system, made once:
# tests/scheduling.py). Python keeps its bytecode caches (__pycache__, ignored by git) even where
# the environment says PYTHONDONTWRITEBYTECODE: without them each of the hundreds of processes the
# suite starts (workers, the demo system, `mimamori` commands) compiles what it imports again,
# about a second of CPU each.
# Then the tests marked serial run in one process, alone: the drills restart the machine's RabbitMQ
# (which the kill -9 drills of another process would be using) and time what a loaded machine slows.
TEST_PROCESSES ?= auto
PYTEST := PYTHONDONTWRITEBYTECODE= $(UV) run pytest
PARALLEL := $(PYTEST) -n $(TEST_PROCESSES) --dist loadfile

test-sqlite:
	DATABASE_URL= $(PARALLEL) -m "not serial"
	DATABASE_URL= $(PYTEST) -m serial

# PostgreSQL is a production set-up: it refuses to start without SECRET_KEY (a test-only one here).
# The run fails if the server restarted meanwhile (tests/conftest.py): no test may restart it.
test-postgres:
	DATABASE_URL=$(PG_TEST_URL) SECRET_KEY=$${SECRET_KEY:-test-postgres-only-secret-key} $(PARALLEL) -m "not browser and not serial"
	DATABASE_URL=$(PG_TEST_URL) SECRET_KEY=$${SECRET_KEY:-test-postgres-only-secret-key} $(PYTEST) -m "not browser and serial"

# Each app keeps its own translations (mimamori/<app>/locale/ja); fill them, then `make messages` again.
APPS := core accounts registry mail broadcasts receipts maintenance support portal console api
messages:
	for app in $(APPS); do (cd mimamori/$$app && mkdir -p locale && \
		MIMAMORI_DATA_DIR=$$(mktemp -d) $(UV) run mimamori makemessages -l ja --no-obsolete -v0 && \
		MIMAMORI_DATA_DIR=$$(mktemp -d) $(UV) run mimamori compilemessages -v0) || exit 1; done
