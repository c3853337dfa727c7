# Sourced by the scripts in examples/ (which set here=$(dirname "$0") first: zsh gives a
# sourced file its own $0): sets BACKPROP to the program to run. An explicit
# BACKPROP wins; then `backprop` on PATH; then the checkout's own .venv/bin/backprop
# (where the README's Quickstart installs it).
if [ -z "${BACKPROP:-}" ]; then
    if command -v backprop >/dev/null 2>&1; then
        BACKPROP=backprop
    elif [ -x "$here/../.venv/bin/backprop" ]; then
        BACKPROP="$here/../.venv/bin/backprop"
    else
        echo "error: backprop not found: run the README's Quickstart, then '. .venv/bin/activate', or set BACKPROP=/path/to/backprop" >&2
        exit 127
    fi
fi
