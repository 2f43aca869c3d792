#!/usr/bin/env bash
# Fails on a relative link in the docs that points at no file, and on any
# tracked file that cites material outside the repository (the founders'
# research notes and design draft are not part of it). Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
while IFS= read -r doc; do
  dir=$(dirname "$doc")
  # Inline links [text](target); external and in-page links are skipped.
  while IFS= read -r target; do
    target=${target%%#*}
    target=${target%% *}
    case "$target" in
      ''|http://*|https://*|mailto:*) continue ;;
    esac
    if [ ! -e "$dir/$target" ]; then
      echo "check-docs: $doc links to $target, which does not exist" >&2
      status=1
    fi
  done < <(grep -o '](\([^)]*\))' "$doc" | sed 's/^](\(.*\))$/\1/')
done < <(git ls-files '*.md')

if git grep -nE '(\.\./shared|shared/notes|DESIGN\.md)' -- . ':!scripts/check-docs.sh'; then
  echo "check-docs: the lines above cite files outside the repository" >&2
  status=1
fi
exit $status
