#!/usr/bin/env bash
# Prepare this machine for the lab and the tests, from the project's own files:
#   - the controller toolchain in .venv, exactly as pinned in requirements.txt
#     (reinstalled only when requirements.txt changes);
#   - ansible-test's pip bootstrap, which it would otherwise download from a host
#     that is not reachable everywhere (tools/get_pip_stub.py);
#   - a Docker engine and the lab's base image (tools/lab.py).
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing the controller toolchain into .venv (requirements.txt)"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" >"$stamp"
fi

# ansible-test bootstraps pip in its venvs with get-pip, cached under this name.
for v in 24_2; do  # the pip version ansible-test 2.19 pins
  install -D -m 0644 tools/get_pip_stub.py "$HOME/.ansible/test/cache/get_pip_${v}.py"
done

.venv/bin/python tools/lab.py engine
.venv/bin/python tools/lab.py image >/dev/null
