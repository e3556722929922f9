#!/usr/bin/env bash
# Keeps a clone light: no tracked file over 10 MB outside www/models/ (the shipped weights).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((10 * 1024 * 1024))
big=$(git ls-files -z | grep -zv '^www/models/' | xargs -0 -r stat -c '%s %n' -- 2>/dev/null | awk -v l="$limit" '$1 > l')
if [ -n "$big" ]; then
  echo "tracked files over 10 MB outside www/models/ (keep training state and outputs out of git):"
  echo "$big"
  exit 1
fi
echo "check-tree: no tracked file over 10 MB outside www/models/"
