#!/usr/bin/env bash
# tests/lint/layers.sh — the layering rule of the README, checked over every
# project #include (TAP). One direction of dependency:
#
#   store/    includes store/ only                  (files and records: the leaf)
#   gpu/      includes store/, gpu/                 (compute: backends, model, stages)
#   daemon/   includes store/, gpu/, daemon/        (daemon/main.c also api/: it wires them)
#   api/      includes store/, daemon/, api/
#   clients/  includes none of them                 (trainctl talks HTTP only)
#
# A violation fails naming the file, the line and the include. The last point
# plants an upward include in a copy of store/ and checks the checker sees it,
# so this test cannot pass by checking nothing.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

allowed() {   # allowed FILE TARGET_DIR -> 0 when FILE may include from TARGET_DIR
    local f=$1 t=$2
    case "$f" in
        store/*)        [[ $t == store ]] ;;
        gpu/*)          [[ $t == store || $t == gpu ]] ;;
        daemon/main.c)  [[ $t == store || $t == gpu || $t == daemon || $t == api ]] ;;
        daemon/*)       [[ $t == store || $t == gpu || $t == daemon ]] ;;
        api/*)          [[ $t == store || $t == daemon || $t == api ]] ;;
        clients/*)      false ;;
        *)              true ;;
    esac
}

# check_tree DIR: prints one line per upward include under DIR's layer folders.
check_tree() {
    local dir=$1 f line n inc top
    ( cd "$dir" && find store gpu daemon api clients -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) 2>/dev/null | sort ) |
    while read -r f; do
        n=0
        while IFS= read -r line; do
            n=$((n + 1))
            [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
            inc=${BASH_REMATCH[1]}
            top=${inc%%/*}
            [[ $inc == */* ]] || continue
            case "$top" in store|gpu|daemon|api|clients) ;; *) continue ;; esac
            allowed "$f" "$top" || echo "$f:$n: includes \"$inc\" (a $top/ header)"
        done < "$dir/$f"
    done
}

echo "1..2"
bad=$(check_tree "$ROOT")
if [ -z "$bad" ]; then
    echo "ok 1 - every #include points down the layers (store <- gpu <- daemon <- api; clients none)"
else
    echo "not ok 1 - upward includes:"
    printf '%s\n' "$bad" | sed 's/^/#   /'
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/layers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$ROOT/store" "$tmp/store"
printf '#include "gpu/model.h"\n' >> "$tmp/store/errbuf.h"
planted=$(check_tree "$tmp")
if [[ $planted == *'store/errbuf.h'*'"gpu/model.h"'* ]]; then
    echo "ok 2 - a planted upward include is caught: $planted"
else
    echo "not ok 2 - a planted upward include was not caught (got: '$planted')"
fi
