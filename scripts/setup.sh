#!/usr/bin/env bash
# Idempotent set-up: system packages (when root), a virtual environment in .venv,
# and the project installed into it with everything the demo and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(graphviz fonts-noto-cjk ffmpeg)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! missing system packages: ${missing[*]}"
    echo "!! run:  sudo apt-get install -y ${missing[*]}   (then run this command again)"
    echo "!! (graphviz draws plans, fonts-noto-cjk renders Japanese, ffmpeg provides ffprobe for tests)"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.yukkuri_nb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing yukkuri_nb and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
