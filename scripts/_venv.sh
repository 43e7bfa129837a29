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
        # ECERT_PURE=1: the development venv is an editable install of the pure-Python modules (setup.py);
        # ./scripts/test-compiled builds and tests the compiled copy beside it.
        if [[ -n "$extras" ]]; then
            ECERT_PURE=1 .venv/bin/python -m pip install -q -e ".[${extras}]" >&2
        else
            ECERT_PURE=1 .venv/bin/python -m pip install -q -e . >&2
        fi
        echo "$want" > "$stamp"
    fi
}
