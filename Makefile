# `make run` and `make test` work on a fresh machine with Python 3.11: they create .venv,
# install the pinned requirements once (re-installed when requirements.txt changes), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench evaluate clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python app.py

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench.py

evaluate: install
	$(BIN)/python train.py evaluate --model models/demo.pt

clean:
	rm -rf $(VENV) .pytest_cache
