#!/usr/bin/env bash
# Install everything align3d_rt needs on a fresh Debian machine: Debian libs (Open3D, C++ inspector build), a venv, Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
need_apt=0
# Debian libs for Open3D, and the C++ inspector's build (CMakeLists.txt): compiler, CMake, Ninja,
# libtiff, nlohmann-json, OpenSSL (sha256), libpng. OpenVINO's C++ SDK comes with the openvino wheel.
APT_PACKAGES="libusb-1.0-0 libgl1 libegl1 libgomp1 cmake g++ ninja-build libtiff-dev nlohmann-json3-dev libssl-dev libpng-dev"
APT_PACKAGES="$APT_PACKAGES clang-format"  # scripts/format_cpp.sh, tests/test_cpp_format.py
APT_PACKAGES="$APT_PACKAGES python3-venv"  # Debian's python3 for .venv-triton (below)
APT_PACKAGES="$APT_PACKAGES chromium"  # headless browser for tests/test_result_page_browser.py (result page, WebGL on SwiftShader)
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
fi
stamp="$VENV/.installed-$(sha1sum requirements.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"; }
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import torch, open_clip, open3d, numba, onnxruntime" 
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
# The Triton loopback test's server venv: made from Debian's /usr/bin/python3, because the Python-backend
# stub of the tritonserver that nvidia-pytriton bundles fails under pyenv builds (RLock._recursion_count).
TRITON_VENV=${TRITON_VENV:-.venv-triton}
tstamp="$TRITON_VENV/.installed-$(sha1sum requirements-triton.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$tstamp" ]; then
  [ -x "$TRITON_VENV/bin/python" ] || /usr/bin/python3 -m venv "$TRITON_VENV"
  "$TRITON_VENV/bin/python" -m pip install -q --upgrade pip
  "$TRITON_VENV/bin/python" -m pip install -q -r requirements-triton.txt 2>&1 | grep -v "^WARNING: Location" || true
  "$TRITON_VENV/bin/python" -c "import pytriton, numba, onnxruntime"
  "$TRITON_VENV/bin/python" -m pip install -q --no-deps -e .
  rm -f "$TRITON_VENV"/.installed-*; touch "$tstamp"
fi
