# Two commands for a fresh clone (see README):  make lab   and   make test
# Everything else here is for maintainers and instructors.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
# JupyterLab refuses to run as root unless told to; students on a laptop are not root.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# As in course_lib/tooling/notebooks.py: stored outputs are made and checked with one thread per kernel.
KERNEL_ENV := PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Where torch comes from. Empty: pip's default index (on Linux that is the large CUDA build).
# For the CPU-only build (about 200 MB instead of several GB), e.g.:
#   make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Forced CPU kernel sets for `make test-kernels`: the stored outputs must not depend on them.
# Each entry is run as `env <entry> pytest ...`; `native` means nothing forced.
KERNEL_SETS ?= ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2

.PHONY: env lab lab-instructor test test-kernels notebooks exercises workspace grade grade-export bench book clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet "torch==2.13.*" --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

# The students' lab: the repository as its root (chapters/, exercises/, my_work/ all reachable),
# opened at the index; course_lib/tooling/lab_config turns off nbgrader's instructor tools and
# JupyterLab's news and extension-manager look-ups (nothing reaches the network).
LAB_ARGS := $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/chapters/00_index.ipynb
STUDENT_CONFIG := JUPYTER_CONFIG_PATH="$(CURDIR)/course_lib/tooling/lab_config$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}"

## Open the course in JupyterLab at the index.
lab: $(STAMP)
	$(STUDENT_CONFIG) $(BIN)/jupyter lab $(LAB_ARGS)

## Instructors: the same lab with nbgrader's tools (Formgrader, Create Assignment, Validate).
lab-instructor: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS)

## Run the whole test suite: unit tests, every notebook under nbval, exercise checks.
test: $(STAMP)
	$(KERNEL_ENV) $(BIN)/python -m pytest -n $(JOBS) -q

## The same suite (grading and website tests aside) under forced CPU kernel sets, one pass each:
## what CI runs after `make test`, so that a stored number that depends on the machine cannot come back.
test-kernels: $(STAMP)
	@set -e; for ks in $(KERNEL_SETS); do \
	  echo "== make test-kernels: $$ks"; \
	  env $$(echo $$ks | tr , ' ') $(KERNEL_ENV) $(BIN)/python -m pytest -n $(JOBS) -q \
	    --ignore-glob='tests/test_grading*' --ignore-glob='tests/test_browser*' --ignore=tests/test_book.py; \
	done

## Re-execute notebooks in place and store their outputs (NB=path to do just one).
notebooks: $(STAMP)
	$(BIN)/python -m course_lib.tooling.notebooks execute $(or $(NB),chapters solutions)

## Regenerate the student versions in exercises/ from solutions/.
exercises: $(STAMP)
	$(BIN)/python -m course_lib.tooling.grading release

## Students: copy the exercises into my_work/ without overwriting anything already there.
workspace:
	mkdir -p my_work && cp -rn exercises/. my_work/

## Grade a folder of submissions (sandboxed): make grade SUBMISSIONS=path OUT=path [GRADE_OPTS=...]
## GRADE_OPTS: -j N, --roster FILE, --chapters chNN.., --cell-timeout S, --notebook-timeout S,
## --memory-mb M, --max-output-kb K (see README, "For instructors").
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" -a -n "$(OUT)" || { echo "usage: make grade SUBMISSIONS=folder OUT=folder" >&2; exit 2; }
	$(BIN)/python -m course_lib.tooling.grading grade "$(SUBMISSIONS)" --out "$(OUT)" -j $(JOBS) $(GRADE_OPTS)

## After manual grading in formgrader (OUT/course): rewrite OUT/scores.csv and OUT/feedback from
## the gradebook; the previous ones are kept in OUT/previous/N/.
grade-export: $(STAMP)
	@test -n "$(OUT)" || { echo "usage: make grade-export OUT=folder" >&2; exit 2; }
	$(BIN)/python -m course_lib.tooling.grading export "$(OUT)"

## The course as a static website in build/book/ (open build/book/index.html; works offline).
## Rebuilt only when a notebook or the builder changed.
book: build/.book-built

build/.book-built: $(STAMP) course_lib/tooling/book.py $(wildcard chapters/*.ipynb exercises/*/*.ipynb)
	$(BIN)/python course_lib/tooling/book.py build --out build/book
	@touch $@

## Benchmarks (not part of the test suite).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py

clean-env:
	rm -rf $(VENV)
