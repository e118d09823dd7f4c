#!/usr/bin/env bash
# One-time set-up of a MixSweep checkout: Debian packages, a virtual environment with every pinned
# package, and a smoke check of the stack. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
step() { printf '\n\033[1m[setup %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }

# Debian packages that hold the demo corpus' real text (see README, "Demo corpus").
APT_PACKAGES=(python3.11-doc bible-kjv fortunes pari-doc manpages-zh fortunes-zh)
# A C++ compiler and Python headers: DeepSpeed JIT-compiles its CPU communication op on first use.
APT_PACKAGES+=(g++ python3.11-dev)
# Headless Chromium and its WebDriver: the browser test of the Prefect and MLflow UIs.
APT_PACKAGES+=(chromium chromium-driver fonts-liberation)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
else
  step "Debian packages present (${#APT_PACKAGES[@]})"
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "MixSweep needs Python 3.11 in $VENV (set PYTHON=python3.11)"; exit 1; }

# pip reads /etc/xdg/pip and PIP_FIND_LINKS; a local wheel folder (the CPU torch) is used when present.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
step "installing Python packages (pinned by constraints.txt; ~3 min the first time)"
"$VENV/bin/python" -m pip install --progress-bar off -q --upgrade "pip==26.3" setuptools wheel
"$VENV/bin/python" -m pip install --progress-bar off "${FIND_LINKS[@]}" -c constraints.txt -e '.[dev]'
"$VENV/bin/python" -m pip check

step "smoke check: imports, Prefect server, MLflow server, Ray"
"$VENV/bin/python" deploy/smoke_check.py
step "set-up done"
