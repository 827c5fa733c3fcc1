#!/usr/bin/env bash
# Creates the virtual environment and installs nas with its test tools; installs the
# Debian packages for the real Fashion-MNIST and a PostgreSQL server when run as root.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
  [ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -q >/dev/null
    for pkg in "${need[@]}"; do  # one at a time: a missing package does not block the others
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null \
        || echo "warning: could not install $pkg; tests that need it will be skipped" >&2
    done
  fi
fi

python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test]'
"$venv/bin/python" -c "import nas, torch; print(f'nas {nas.__version__} with torch {torch.__version__}, cuda: {torch.cuda.is_available()}')"
