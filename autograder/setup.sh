#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# pip only: a virtual environment with CPU-only torch, numpy and IPython, and the
# unprivileged user that student code runs as. Works on Ubuntu 22.04's Python 3.10.
set -euo pipefail
SRC=/autograder/source
VENV=/autograder/venv

if ! python3 -m venv "$VENV" 2>/dev/null; then
  # Ubuntu ships venv's pip bootstrap separately; virtualenv from PyPI does the same job.
  python3 -m pip install --quiet virtualenv
  python3 -m virtualenv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --index-url https://download.pytorch.org/whl/cpu torch==2.14.1
"$VENV/bin/pip" install --quiet -r "$SRC/requirements-grader.txt"
"$VENV/bin/python" -c "import torch, numpy, IPython; print('torch', torch.__version__)"

if ! id -u student >/dev/null 2>&1; then
  adduser --disabled-password --gecos "" --no-create-home student
fi
chmod -R a+rX "$VENV" "$SRC/hw10kit"
