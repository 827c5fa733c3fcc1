# The README's two commands: `make run` (set up, then the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
NAS := $(VENV)/bin/nas
SPACE ?= resnext
TRIALS ?= 50

.PHONY: setup run test lint bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

run: setup
	$(NAS) search --space $(SPACE) --trials $(TRIALS)

test: setup
	bash scripts/test.sh $(VENV)

lint: setup
	$(VENV)/bin/ruff check nas tests benchmarks

bench: setup
	$(NAS) bench d2l_lenet_bn --repeats 5

clean-venv:
	rm -rf $(VENV)
