# poisonlib: `make book` builds the book at the cpu profile, `make test` runs every test.
# Both create .venv with plain `python3 -m venv` + pip on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SMOKE  := $(CURDIR)/_build/smoke

.PHONY: install book test smoke-book benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools prints an informational "Editable installation" block through the warnings module: nothing to act on
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5); print('torch', torch.__version__, '+ torchvision', torchvision.__version__, 'import OK')"
	touch $(STAMP)

install: $(STAMP)

## Execute the notebooks at the cpu profile and build the HTML (ends with the path of index.html).
book: install
	$(BIN)/poisonlib book --profile cpu

## Build the book at the smoke profile into _build/smoke (fresh results store).
smoke-book: install
	rm -rf $(SMOKE)
	POISONLIB_RESULTS=$(SMOKE)/results $(BIN)/poisonlib book --profile smoke --path-output $(SMOKE)

## Unit tests + the smoke book + nbval on its executed notebooks (re-executed on a copy of the smoke book's
## results store: nbval checks that each chapter reproduces its outputs; recomputing cells from scratch is
## tests/test_protocols.py's determinism test, per protocol).
test: smoke-book
	rm -rf $(SMOKE)/results-nbval && cp -r $(SMOKE)/results $(SMOKE)/results-nbval
	POISONLIB_RESULTS=$(SMOKE)/results-nbval $(BIN)/pytest tests book/executed --nbval-lax --nbval-current-env -q --durations=15

benchmark: install
	$(BIN)/python benchmarks/gc_step.py

clean:
	rm -rf _build book/executed results
