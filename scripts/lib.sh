# Shared by scripts/up and scripts/test: system packages and the project venv.
# Expects REPO and VENV to be set by the caller.

say() { printf '==> %s\n' "$*" >&2; }

install_system_packages() {
    local wanted="$*"
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian-based system: install the equivalents of: $wanted"
        return 0
    fi
    local missing=() pkg
    for pkg in $wanted; do
        # `dpkg -s` also succeeds for removed packages whose config files remain,
        # so ask for the exact state instead.
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi

    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
            sudo=(sudo)
        else
            say "missing system packages: ${missing[*]} (no root or sudo to install them;" \
                "tests that need them will be skipped, and fail under CI=true)"
            return 0
        fi
    fi
    say "installing system packages: ${missing[*]}"
    ${sudo[@]+"${sudo[@]}"} apt-get update
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

# ensure_venv EXTRAS: .venv with worklens installed editable with those extras.
ensure_venv() {
    local extras="$1"
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        say "python3 is $(python3 --version 2>&1); worklens needs Python 3.11 or newer"
        exit 1
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    # Reinstall only when the dependency declaration changed: the install is
    # editable, so source changes never need one, and repeated runs stay fast.
    local stamp="$VENV/.worklens-install-stamp" want
    want="$extras $(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        say "installing worklens[$extras] into $VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e ".[$extras]"
        echo "$want" >"$stamp"
    fi
}

# ensure_assets: the pinned front-end assets (src/worklens/server/web/assets.toml)
# in static/vendor/. The command checks its manifest first and downloads only
# when a file is missing, altered or pinned to another version; it exits non-zero
# (with the reason) when a download or an integrity check fails.
ensure_assets() {
    "$VENV/bin/python" -m worklens.server.web.assets
}

