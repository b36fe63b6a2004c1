# The two commands a newcomer runs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   ?= demo-out
# The PyTorch wheel and where pip takes it from. The default is what works on the project's
# machines (a CPU build from pip's configured index). On a Linux machine with internet, plain
# PyPI serves the multi-GB CUDA build; PyTorch's own CPU index serves the CPU one:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
# Two stamps, each named after pyproject.toml's checksum, so a second run does nothing and an
# edited pyproject.toml installs again: what the demo runs, then the test tools on top.
CKSUM   := $(shell cksum < pyproject.toml | cut -d' ' -f1)
RUNTIME := $(VENV)/.runtime-$(CKSUM)
TOOLS   := $(VENV)/.test-tools-$(CKSUM)

.PHONY: setup setup-test test lint typecheck unit demo bench clean

setup: $(RUNTIME)

setup-test: $(TOOLS)

# The demo: the venv, torch, aewatch with its runtime dependencies, and mosquitto (the demo
# starts a private broker; the broker tests use it too).
$(RUNTIME): pyproject.toml
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		{ apt-get update -qq && apt-get install -y -qq mosquitto; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Exactly this torch, first: a looser spec may pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet$(if $(TORCH_INDEX), --index-url $(TORCH_INDEX)) '$(TORCH)'
	$(PY) -m pip install --quiet -e .
	rm -f $(VENV)/.runtime-* $(VENV)/.installed-*
	touch $@

# The tests, lint and type checks: the dev extras and the tools the shell tests run.
$(TOOLS): $(RUNTIME)
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
	# deploy/alertmanager's example routes: amtool check-config and config routes test.
	command -v amtool >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends prometheus-alertmanager; }
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.test-tools-*
	touch $@

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup-test
	$(VENV)/bin/mypy

unit: setup-test
	$(VENV)/bin/pytest -q

test: lint typecheck unit

demo: setup
	$(VENV)/bin/aewatch demo --out $(DEMO)

# Detection quality of the shipped defaults, full run (< 40 min); writes section 5 of
# bench/RESULTS.md and bench/out/quality/. A quick look: bench/quality.py --quick.
.PHONY: quality
quality: setup
	$(PY) bench/quality.py --data-root ../shared/data

# The reliability suite, long form: SIGKILLs the real daemon 20 times under load (`make
# test` runs 3), kills a broker, reloads broken bundles under load, ...; then prints the
# table of what each test measured (docs/operations.md, "What has been tried").
RELIABILITY_FIGURES := bench/out/reliability.jsonl
.PHONY: reliability
reliability: setup-test
	mkdir -p $(dir $(RELIABILITY_FIGURES)) && rm -f $(RELIABILITY_FIGURES)
	AEWATCH_RELIABILITY_KILLS=20 AEWATCH_RELIABILITY_REPEATS=20 \
	  AEWATCH_RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) \
	  $(VENV)/bin/pytest -q -s -m reliability tests/reliability
	$(VENV)/bin/python -m tests.reliability.figures $(RELIABILITY_FIGURES)

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
