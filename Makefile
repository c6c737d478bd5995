# EECS 182 HW10 bundle.
#
#   make release     master sources -> release/hw10, solutions/hw10, autograder/autograder.zip
#                    (HIDDEN_VISIBILITY=after_published|after_due_date|visible;
#                    RELEASE_URL=https://.../hw10_kit.zip also writes release/hw10_kit.zip, which the
#                    notebooks' setup cells fetch where hw10kit/ is missing, as on Colab)
#   make solutions   execute solutions/hw10/*.ipynb into solutions/hw10/executed/ (slow: trains)
#   make grade SUBMISSION=<zip or folder> RESULTS=<path>   grade one submission locally
#                    (GRADER_PYTHON=.grader-venv/bin/python: in the environment setup.sh builds)
#   make grade-batch SUBMISSIONS=<folder or Gradescope export zip> OUT=<folder>   grade a whole
#                    class into OUT (results per student, gradebook.csv, report.html); JOBS=N at
#                    once, REGRADE=1 grades again the ones graded before, TIMEOUT=S per grading;
#                    refuses without pool-user isolation (root, system-Python venv) unless UNSAFE=1
#   make grader-env  build .grader-venv with setup.sh's own requirements (as on Gradescope)
#   make test        fast tests;  make test-slow   all tests, slow ones included
#   make bench       every training benchmark the manifest declares, one after the other (hours)
#   make bench-<key> one problem's benchmark: bench-vae (20 to 60 min), bench-gan (about 55 min),
#                    bench-diffusion, bench-continual (each over an hour on 2 cores; bench/<key>.json)
#   make classifier  retrain the sample-metric MNIST classifier into data/mnist_classifier.pt
#   make bench-grading   time grading and the build (bench/grading.json)
#   make bench-grade-batch   batch-grading throughput on 50 generated submissions (bench/grade_batch.json)
#   make clean       remove built outputs (keeps .venv)
#   make help        this list

SHELL := /bin/bash
# A system Python keeps the venv usable by the grader's unprivileged sandbox user
# (an interpreter under /root, such as pyenv's, is not readable by it).
PYTHON3 ?= $(firstword $(wildcard /usr/bin/python3.11 /usr/bin/python3) python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all help release solutions grade grade-batch bench-grade-batch grader-env test test-slow clean venv bench bench-grading classifier

all: release

help:
	@sed -n '3,/^$$/p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

# (Re)install only when requirements.lock changes.
$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -r requirements.lock
	touch $@

venv: $(STAMP)

# HIDDEN_VISIBILITY=after_published (default) | after_due_date | visible: when students
# see the hidden checks' results on Gradescope.
release: $(STAMP)
	$(if $(HIDDEN_VISIBILITY),HIDDEN_VISIBILITY=$(HIDDEN_VISIBILITY)) $(PY) -m pipeline release

# autograder/autograder.zip is written by `make release` (with everything else);
# `make grade` rebuilds it only when something that goes into it changed.
ZIP_INPUTS := $(wildcard autograder/setup.sh autograder/run_autograder \
	autograder/requirements-grader.txt pipeline/*.py) \
	$(shell find autograder/hw10grader hw10kit -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)

autograder/autograder.zip: $(STAMP) $(ZIP_INPUTS)
	$(PY) -m pipeline release

solutions: $(STAMP)
	$(PY) -m pipeline solutions

grade: autograder/autograder.zip
	@test -n "$(SUBMISSION)" || { echo "usage: make grade SUBMISSION=<zip or folder> RESULTS=<path>"; exit 2; }
	@test -n "$(RESULTS)" || { echo "usage: make grade SUBMISSION=<zip or folder> RESULTS=<path>"; exit 2; }
	$(PY) -m pipeline.grade_local --submission "$(SUBMISSION)" --results "$(RESULTS)" \
		$(if $(GRADER_PYTHON),--python "$(GRADER_PYTHON)")

GRADE_BATCH_USAGE := usage: make grade-batch SUBMISSIONS=<folder or export zip> OUT=<folder> [JOBS=N] [REGRADE=1] [TIMEOUT=S] [UNSAFE=1]
grade-batch: autograder/autograder.zip
	@test -n "$(SUBMISSIONS)" -a -n "$(OUT)" || { echo "$(GRADE_BATCH_USAGE)"; exit 2; }
	$(PY) -m pipeline.grade_batch --submissions "$(SUBMISSIONS)" --out "$(OUT)" \
		$(if $(JOBS),--jobs $(JOBS)) $(if $(REGRADE),--regrade) $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
		$(if $(UNSAFE),--unsafe-no-isolation) $(if $(GRADER_PYTHON),--python "$(GRADER_PYTHON)")

# The grader's environment exactly as setup.sh builds it on Gradescope (torch from the CPU
# wheel index, or PyPI where that index is out of reach).
.grader-venv/.installed: autograder/setup.sh autograder/requirements-grader.txt
	HW10_VENV=$(CURDIR)/.grader-venv HW10_SOURCE=$(CURDIR)/autograder HW10_SETUP_PYTHON=$(PYTHON3) \
		bash autograder/setup.sh
	touch $@

grader-env: .grader-venv/.installed

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m ''

classifier: $(STAMP)
	$(PY) -m hw10kit.classifier

# The benchmarks the manifest declares (hw10kit/manifest.py, Problem.bench): `make bench`
# runs them all, one after the other; `make bench-<key>` runs one (bench-vae, bench-gan).
bench: $(STAMP)
	$(PY) -m bench

bench-%: $(STAMP)
	$(PY) -m bench $*

bench-grading: autograder/autograder.zip
	$(PY) -m bench.grading --runs 3

bench-grade-batch: autograder/autograder.zip
	$(PY) -m bench.grade_batch --count 50

clean:
	rm -rf release solutions autograder/autograder.zip .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
