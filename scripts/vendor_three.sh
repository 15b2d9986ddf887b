#!/usr/bin/env bash
# Rebuild align3d_rt/eval/page/assets/three.page.min.js: the parts of three.js the result page uses,
# bundled by esbuild into one classic script (global THREE) so the page can inline it and work
# from file:// (Chromium refuses ES-module imports there). Needs node/npm and the npm registry.
# Usage: scripts/vendor_three.sh [THREE_VERSION]   (default: the version in assets/THREE_VERSION)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
assets="$here/align3d_rt/eval/page/assets"
version="${1:-$(cat "$assets/THREE_VERSION")}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "three@$version" esbuild@0.28.2
cat > entry.js <<'JS'
export { REVISION, WebGLRenderer, Scene, PerspectiveCamera, BufferGeometry, BufferAttribute, Points,
  PointsMaterial, LineSegments, LineBasicMaterial, Color, Vector3, Quaternion, SRGBColorSpace } from 'three';
JS
{
  printf '/* three.js %s (npm three@%s), MIT License, Copyright 2010-2026 three.js authors: see THREE_LICENSE.\n' "r$(echo "$version" | cut -d. -f2)" "$version"
  printf '   Subset bundled by scripts/vendor_three.sh (esbuild --bundle --minify --format=iife). */\n'
  node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=THREE --minify \
    --legal-comments=inline --target=es2020 --log-level=warning
} > "$assets/three.page.min.js"
cp node_modules/three/LICENSE "$assets/THREE_LICENSE"
echo "$version" > "$assets/THREE_VERSION"
if grep -qi '</script' "$assets/three.page.min.js"; then
  echo "three.page.min.js contains '</script': it cannot be inlined" >&2; exit 1
fi
echo "wrote $assets/three.page.min.js ($(wc -c < "$assets/three.page.min.js") bytes), three@$version"
