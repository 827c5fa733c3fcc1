#!/usr/bin/env bash
# Refreshes requirements.lock (`make lock`): resolves nas with its test tools in a fresh
# temporary virtual environment, as a first `make test` would without the lock, and pins every
# package the resolver picked (transitive ones, pip and setuptools included) except nas itself.
# Run it after changing pyproject.toml's dependencies, then commit the lock: scripts/setup.sh
# installs exactly what it names.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=${1:-requirements.lock}
python=${PYTHON:-python3}
tmp=$(mktemp -d /tmp/nas-lock.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$python" -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
"$py" -m pip install -q --upgrade pip setuptools  # the newest installer and build backend
# --ignore-installed: the report names every package, even one the new venv came with
"$py" -m pip install -q --dry-run --ignore-installed --report "$tmp/report.json" -e '.[test]'
"$py" - "$tmp/report.json" "$lock" <<'EOF'
import json, platform, sys, time
from importlib.metadata import version

report, lock = sys.argv[1], sys.argv[2]
picked = {p["metadata"]["name"].lower(): p["metadata"]["version"]
          for p in json.load(open(report))["install"]}
picked.pop("nas")
for tool in ("pip", "setuptools"):  # the installer, and the build backend of `pip install -e .`
    picked[tool] = version(tool)
python = ".".join(platform.python_version_tuple()[:2])
header = [
    "# requirements.lock: every package `make run` and `make test` install, pinned.",
    f"# python {python} on {platform.system().lower()} {platform.machine()}",
    f"# made by `make lock` (scripts/lock.sh) on {time.strftime('%Y-%m-%d')}: nas[test] resolved",
    "# in a fresh virtual environment; every package pip picked, except nas itself. Refresh it",
    "# with `make lock` after changing pyproject.toml's dependencies (whose ranges stay loose).",
]
with open(lock, "w") as f:
    f.write("\n".join(header + [f"{name}=={version}" for name, version in sorted(picked.items())])
            + "\n")
print(f"wrote {lock}: {len(picked)} packages pinned for python {python}")
EOF
