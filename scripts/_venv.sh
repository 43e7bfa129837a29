# shellcheck shell=bash
# Sourced by the scripts: make .venv exist and hold the project (editable) with the given extras.
# Reinstalls only when pyproject.toml changed since the last install.
ensure_venv() {
    local extras="${1:-}"
    local py="${PYTHON:-python3}"
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "error: Python 3.11+ is required (found: $("$py" --version 2>&1))" >&2
        exit 2
    fi
    if [[ ! -x .venv/bin/python ]]; then
        echo "creating .venv ..." >&2
        "$py" -m venv .venv
    fi
    local stamp=".venv/.installed-${extras:-base}"
    local want
    want="$(sha256sum pyproject.toml | cut -c1-64)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "installing ecert-chain into .venv ..." >&2
        .venv/bin/python -m pip install -q --upgrade pip >&2
        if [[ -n "$extras" ]]; then
            .venv/bin/python -m pip install -q -e ".[${extras}]" >&2
        else
            .venv/bin/python -m pip install -q -e . >&2
        fi
        echo "$want" > "$stamp"
    fi
}
