# The two commands a newcomer runs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
DEMO   ?= demo-out

.PHONY: setup test lint typecheck unit demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	# The broker tests run a real mosquitto; install it where the machine lacks it.
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		{ apt-get update -qq && apt-get install -y -qq mosquitto; }
	# `promtool check metrics` and `check rules` come with Debian's prometheus package.
	command -v promtool >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends prometheus; }
	# tests/shell/test_systemd.py: systemd-analyze (verify, security --offline) and shellcheck.
	command -v systemd-analyze >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends systemd; }
	command -v shellcheck >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends shellcheck; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Exactly this torch: a CPU build; a looser spec may pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: lint typecheck unit

demo: setup
	$(VENV)/bin/aewatch demo --out $(DEMO)

# Detection quality of the shipped defaults, full run (< 40 min); writes section 5 of
# bench/RESULTS.md and bench/out/quality/. A quick look: bench/quality.py --quick.
.PHONY: quality
quality: setup
	$(PY) bench/quality.py --data-root ../shared/data

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
