# Two commands for a fresh clone (see README):  make lab   and   make test
# Everything else here is for maintainers and instructors.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
# JupyterLab refuses to run as root unless told to; students on a laptop are not root.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# As in course_lib/notebooks.py: stored outputs are made and checked with one thread per kernel.
KERNEL_ENV := PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: env lab test notebooks exercises workspace grade bench clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

## Open the course in JupyterLab at the index.
lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) chapters/00_index.ipynb

## Run the whole test suite: unit tests, every notebook under nbval, exercise checks.
test: $(STAMP)
	$(KERNEL_ENV) $(BIN)/python -m pytest -n $(JOBS) -q

## Re-execute notebooks in place and store their outputs (NB=path to do just one).
notebooks: $(STAMP)
	$(BIN)/python -m course_lib.notebooks execute $(or $(NB),chapters solutions)

## Regenerate the student versions in exercises/ from solutions/.
exercises: $(STAMP)
	$(BIN)/python -m course_lib.grading release

## Students: copy the exercises into my_work/ without overwriting anything already there.
workspace:
	mkdir -p my_work && cp -rn exercises/. my_work/

## Grade a folder of submissions (sandboxed): make grade SUBMISSIONS=path OUT=path [GRADE_OPTS=...]
## GRADE_OPTS: -j N, --roster FILE, --chapters chNN.., --cell-timeout S, --notebook-timeout S,
## --memory-mb M, --max-output-kb K (see README, "For instructors").
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" -a -n "$(OUT)" || { echo "usage: make grade SUBMISSIONS=folder OUT=folder" >&2; exit 2; }
	$(BIN)/python -m course_lib.grading grade "$(SUBMISSIONS)" --out "$(OUT)" -j $(JOBS) $(GRADE_OPTS)

## Benchmarks (not part of the test suite).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py

clean-env:
	rm -rf $(VENV)
