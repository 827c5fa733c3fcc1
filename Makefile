# The README's two commands: `make run` (set up, then the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
LOCK := requirements.lock
PY := $(VENV)/bin/python
NAS := $(VENV)/bin/nas
SPACE ?= resnext
TRIALS ?= 50

.PHONY: setup run test test-fast lint bench lock clean-venv

setup: $(VENV)/.installed

# the venv is made anew from the lock whenever the lock (or what installs it) changes
$(VENV)/.installed: $(LOCK) pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh $(VENV)
	touch $@

run: setup
	$(NAS) search --space $(SPACE) --trials $(TRIALS)

test: setup
	bash scripts/test.sh $(VENV)

# the tests that neither train nor start a search, a server or a process (tests/conftest.py)
test-fast: setup
	NAS_TEST_SERVERS=0 bash scripts/test.sh $(VENV) -m "not slow and not postgres"

# pins every package nas[test] resolves to today (run after changing pyproject's dependencies)
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh $(LOCK)

lint: setup
	$(VENV)/bin/ruff check nas tests benchmarks

bench: setup
	$(NAS) bench d2l_lenet_bn --repeats 5

clean-venv:
	rm -rf $(VENV)
