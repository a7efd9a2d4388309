# mgbench developer entry points. `make demo` installs and runs the default suite;
# `make test` installs and runs the test suite (this is what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install demo test test-fast test-kernels mutate leaderboard leaderboard-local reference regress bench clean

# The committed reference results (every suite, every zoo model; only `make reference` writes them)
# and the git-ignored local store (every command's default --store, the demo's too).
STORE := results/reference.sqlite
LOCAL_STORE := results/local.sqlite

install: $(STAMP)

# torchattacks is the independent PGD reference of the attack tests and perf benchmark, not a
# runtime dependency; --no-deps so that it can never pull in another torch.
$(STAMP): setup.cfg pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[test,robustbench]'
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps torchattacks==3.5.1
	# pyautoattack's wheel carries a partial `robustbench` folder of its own: installed after
	# robustbench (pip's order varies) it overwrites robustbench.eval. Reinstall robustbench last.
	$(BIN)/python -m pip install $(PIP_FLAGS) --no-deps --force-reinstall robustbench==1.1.1
	touch $(STAMP)

demo: install
	$(BIN)/mgbench run --suite clean --store $(LOCAL_STORE)

# Lint first (ruff, configured in pyproject.toml), then the import layers (lint-imports: the
# import-linter contracts in pyproject.toml, see docs/architecture.md): cheap failures before the long
# test run. The tests run on every core (pytest-xdist: one worker per core, each with its share of
# torch threads).
test: install
	$(BIN)/ruff check mgbench tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto

test-fast: install
	$(BIN)/python -m pytest -q -n auto -m "not slow"

# The tests whose outcome rests on float arithmetic (marked `kernels`: comparisons across
# implementations, attack and check outcomes, model outputs; slow ones included), again on a
# second CPU kernel path: AVX2 on an AVX-512 machine, the scalar "default" path on an AVX2-only
# one. CI machines of one kind differ in this, and a last-bit change must not fail a test on either.
SECOND_KERNEL_PATH = $$($(BIN)/python -c "import torch; \
	print('avx2' if torch.backends.cpu.get_cpu_capability().startswith('AVX512') else 'default')")
test-kernels: install
	ATEN_CPU_CAPABILITY=$(SECOND_KERNEL_PATH) $(BIN)/python -c \
		"import torch; print('second CPU kernel path:', torch.backends.cpu.get_cpu_capability())"
	ATEN_CPU_CAPABILITY=$(SECOND_KERNEL_PATH) $(BIN)/python -m pytest -q -n auto -m kernels

# Mutation testing of the modules that produce numbers against their fast tests (mutmut, in a
# scratch copy; survivors are printed and explained in results/mutation.md). MUTATE names the
# groups (default: all, hours of CPU; `$(BIN)/python tests/mutate.py --list`), e.g.
# `make mutate MUTATE="corruption-metrics attack-examples"` (minutes).
MUTATE ?=
mutate: install
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[mutate]'
	$(BIN)/python tests/mutate.py $(MUTATE)

# The committed page (results/leaderboard/, with its screenshots at 1280 and 390 px) from the committed
# reference alone; your own runs go to leaderboard-local (results/local-leaderboard/, git-ignored).
leaderboard: install
	$(BIN)/mgbench leaderboard --store $(STORE) --screenshots

leaderboard-local: install
	$(BIN)/mgbench leaderboard --local

# Recompute the reference store: the CPU protocol (docs/attacks.md, "The CPU reference"; aimed at
# about 8 hours of a 2-core machine but projected from measured cells to about 15: attacks-seeds
# alone measured about 4 in two one-thread lanes, results/perf/cost-cpu.md; resumable: finished
# cells are kept, so it spans sessions). Each suite first prints its
# plan, estimated from a timed probe of every cell still to compute. On a GPU, use
# REFERENCE_SUITES="clean corruptions attacks attacks-seeds attacks-mgnet-paper" (the full sweep).
# REFERENCE_BATCH: not part of a cell's key (each cell records it). A batch of 64 attacks every
# image 1.3-1.8x faster than 256 on one CPU thread (benchmarks/perf/batch_size.py), but the attack
# cells mostly attack their robust survivors, a fraction of the batch: measured in the reference,
# 64 was 10% slower than 256 for APGD-CE+T on tdam-tiny (docs/attacks.md), so 256 stays.
REFERENCE_SUITES ?= clean corruptions attacks-seeds attacks-cpu attacks-mgnet-paper-cpu
REFERENCE_BATCH ?= 256
reference: install
	for suite in $(REFERENCE_SUITES); do \
		$(BIN)/mgbench run --suite $$suite --store $(STORE) --batch-size $(REFERENCE_BATCH) --plan && \
		$(BIN)/mgbench run --suite $$suite --store $(STORE) --batch-size $(REFERENCE_BATCH) || exit 1; done
	for model in mgnet-tiny.digits.s0 ltpa-tiny.digits.s0; do \
		$(BIN)/mgbench glimpses --model $$model --n 16 --out results/glimpses/$$model.png || exit 1; done

regress: install
	$(BIN)/mgbench regress --baseline results/baseline/digits.csv

# Every speed benchmark in its quick mode: ratios against the reference tools, measured side by side.
bench: install
	for f in benchmarks/perf/*.py; do $(BIN)/python $$f --quick || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
