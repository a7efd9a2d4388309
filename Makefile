# mgbench developer entry points. `make demo` installs and runs the default suite;
# `make test` installs and runs the test suite (this is what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-fast leaderboard bench clean

install: $(STAMP)

# torchattacks is the independent PGD reference of the attack tests and perf benchmark, not a
# runtime dependency; --no-deps so that it can never pull in another torch.
$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[test]'
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps torchattacks==3.5.1
	touch $(STAMP)

demo: install
	$(BIN)/mgbench run --suite clean

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

leaderboard: install
	$(BIN)/mgbench leaderboard

bench: install
	for f in benchmarks/perf/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
