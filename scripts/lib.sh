# shellcheck shell=bash
# Shared helpers for scripts/bootstrap and scripts/services. Source it; do not run it.

# Print "<prog>: error: MSG" to stderr and exit 1.
lasso_die() {
    printf '%s: error: %s\n' "${LASSO_PROG:-lasso}" "$*" >&2
    exit 1
}

# Print "<prog>: MSG" to stderr (warnings and notes that are not results).
lasso_warn() {
    printf '%s: %s\n' "${LASSO_PROG:-lasso}" "$*" >&2
}

# Print "<prog>: MSG" to stdout (one line per thing done).
lasso_say() {
    printf '%s: %s\n' "${LASSO_PROG:-lasso}" "$*"
}

lasso_is_root() {
    [[ ${EUID:-$(id -u)} -eq 0 ]]
}

# Run a command as root: directly when root, through sudo otherwise.
# $1 is a short description of why, used in the error message.
lasso_as_root() {
    local why=$1
    shift
    if lasso_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        lasso_die "$why needs root, but you are not root and sudo is not installed; run this as root or install sudo"
    fi
}

# The cache directory (venv, node tools, stamps).
lasso_cache_dir() {
    if [[ -n ${LASSO_CACHE_DIR:-} ]]; then
        printf '%s\n' "$LASSO_CACHE_DIR"
    elif [[ -n ${HOME:-} ]]; then
        printf '%s\n' "$HOME/.cache/lasso"
    else
        lasso_die "neither LASSO_CACHE_DIR nor HOME is set"
    fi
}

# Newest /usr/lib/postgresql/*/bin that has a postgres binary, or nothing.
lasso_pg_bindir() {
    local d best="" best_ver=-1 ver
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/postgres ]] || continue
        ver=${d#/usr/lib/postgresql/}
        ver=${ver%%/*}
        ver=${ver%%.*}
        [[ $ver =~ ^[0-9]+$ ]] || continue
        if ((ver > best_ver)); then
            best_ver=$ver
            best=$d
        fi
    done
    [[ -n $best ]] && printf '%s\n' "$best"
    return 0
}
