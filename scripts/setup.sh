#!/usr/bin/env bash
# Creates the virtual environment anew and installs nas with its test tools at the versions
# requirements.lock pins (so two set-ups on different days install the same packages; `make
# lock` refreshes it); installs the Debian packages for the real Fashion-MNIST and a PostgreSQL
# server when run as root.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
lock=requirements.lock
cd "$(dirname "$0")/.."

# the lock was resolved for one Python and platform; another would install what it cannot run
made_for=$(sed -n 's/^# python \(.*\)$/\1/p' "$lock")
here=$("$python" -c 'import platform as p, sys
print(f"{sys.version_info[0]}.{sys.version_info[1]} on {p.system().lower()} {p.machine()}")')
if [ "$made_for" != "$here" ]; then
  echo "setup: $lock pins packages for python $made_for; $python is python $here:" \
       "run \`make lock PYTHON=$python\` (or PYTHON=python${made_for%% *})" >&2
  exit 2
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  "$python" -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
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

if [ -f "$venv/pyvenv.cfg" ]; then
  rm -rf "$venv"  # anew: nothing the lock no longer names stays behind
elif [ -e "$venv" ]; then
  echo "setup: $venv exists and is not a virtual environment; not touching it" >&2
  exit 2
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q "$(grep '^pip==' "$lock")"
"$venv/bin/python" -m pip install -q -r "$lock"
# nas itself without a resolve: its dependencies are the lock's; setuptools (pinned there too)
# builds it in this venv rather than in an isolated one with whatever release is newest
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
if ! "$venv/bin/python" -m pip check >&2; then
  echo "setup: $lock does not hold every dependency pyproject.toml names: run \`make lock\`" >&2
  exit 2
fi
"$venv/bin/python" -c "import nas, torch; print(f'nas {nas.__version__} with torch {torch.__version__}, cuda: {torch.cuda.is_available()}')"
