# mgbench developer entry points. `make demo` installs and runs the default suite;
# `make test` installs and runs the test suite (this is what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-fast mutate leaderboard reference regress bench clean

# The committed reference results (every suite, every zoo model) and the demo's own fresh store.
STORE := results/mgbench.sqlite
DEMO_STORE := results/demo.sqlite

install: $(STAMP)

# torchattacks is the independent PGD reference of the attack tests and perf benchmark, not a
# runtime dependency; --no-deps so that it can never pull in another torch.
$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[test]'
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps torchattacks==3.5.1
	touch $(STAMP)

demo: install
	$(BIN)/mgbench run --suite clean --store $(DEMO_STORE)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Mutation testing of the modules that produce numbers against their fast tests (mutmut, in a
# scratch copy; survivors are printed and explained in results/mutation.md). MUTATE names the
# groups (default: all, hours of CPU; `$(BIN)/python tests/mutate.py --list`), e.g.
# `make mutate MUTATE="corruption-metrics attack-examples"` (minutes).
MUTATE ?=
mutate: install
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[mutate]'
	$(BIN)/python tests/mutate.py $(MUTATE)

leaderboard: install
	$(BIN)/mgbench leaderboard --store $(STORE) $(if $(wildcard $(DEMO_STORE)),--store $(DEMO_STORE))

# Recompute the reference store (hours on a CPU; resumable: finished cells are kept).
reference: install
	for suite in clean corruptions attacks attacks-mgnet-paper; do \
		$(BIN)/mgbench run --suite $$suite --store $(STORE) || exit 1; done
	for model in mgnet-tiny.digits ltpa-tiny.digits; do \
		$(BIN)/mgbench glimpses --model $$model --n 16 --out results/glimpses/$$model.png || exit 1; done

regress: install
	$(BIN)/mgbench regress --baseline results/baseline/digits.csv

# Every speed benchmark in its quick mode: ratios against the reference tools, measured side by side.
bench: install
	for f in benchmarks/perf/*.py; do $(BIN)/python $$f --quick || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
