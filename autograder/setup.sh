#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# pip only: a virtual environment with CPU-only torch and requirements-grader.txt (what
# that environment holds is decided there), and the pool of unprivileged users that
# student code runs as. Works on Ubuntu 22.04's Python 3.10.
#
# The same script builds the environment elsewhere: AUTOGRADER_ROOT moves the layout,
# HW10_VENV the environment, HW10_SETUP_PYTHON names the interpreter, and
# HW10_TORCH_INDEX the wheel index for torch (empty: PyPI).
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"  # useradd
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="${HW10_SOURCE:-$ROOT/source}"
VENV="${HW10_VENV:-$ROOT/venv}"
PYTHON="${HW10_SETUP_PYTHON:-python3}"
TORCH_INDEX="${HW10_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
TORCH=torch==2.14.1

if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  # Ubuntu ships venv's pip bootstrap separately; virtualenv from PyPI does the same job.
  "$PYTHON" -m pip install --quiet virtualenv
  "$PYTHON" -m virtualenv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
if [ -z "$TORCH_INDEX" ] || ! "$VENV/bin/pip" install --quiet --index-url "$TORCH_INDEX" "$TORCH"; then
  echo "setup.sh: installing $TORCH from PyPI"
  "$VENV/bin/pip" install --quiet "$TORCH"
fi
"$VENV/bin/pip" install --quiet -r "$SRC/requirements-grader.txt"
"$VENV/bin/python" -c "import torch, numpy, IPython, matplotlib, tqdm; print('torch', torch.__version__)"

if [ "$(id -u)" = 0 ]; then
  # hw10sb1..hw10sb8: dedicated users, one per sandbox at a time (the judge creates any
  # that are missing, the same way).
  for i in 1 2 3 4 5 6 7 8; do
    name="hw10sb$i"
    id -u "$name" >/dev/null 2>&1 && continue
    if command -v useradd >/dev/null; then
      useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$name"
    else
      adduser --system --no-create-home --group --shell /usr/sbin/nologin "$name"
    fi
  done
  chmod -R a+rX "$VENV"
  [ -d "$SRC/hw10kit" ] && chmod -R a+rX "$SRC/hw10kit"
fi
exit 0
