#!/usr/bin/env bash
# Formats every C++ file under cpp/ (*.cpp, *.hpp) in place with the repository's .clang-format
# (clang-format from Debian, scripts/setup.sh). tests/test_cpp_format.py checks the result.
#
#   scripts/format_cpp.sh [ROOT]     ROOT: a checkout holding .clang-format and cpp/ (default: this one)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
if ! command -v clang-format >/dev/null; then
  echo "format_cpp.sh: clang-format not found (run scripts/setup.sh)" >&2
  exit 2
fi
if [ ! -f "$root/.clang-format" ] || [ ! -d "$root/cpp" ]; then
  echo "$root: not a checkout (needs .clang-format and cpp/)" >&2
  exit 2
fi
find "$root/cpp" -type f \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z |
  xargs -0 -r clang-format -i --style=file
