#!/usr/bin/env bash
# Install everything the tests need and run them: the one test command (README, .ci/run).
#
# 1. PyTorch 2.13.0 first (a CPU build where one is on the machine), so the [export] extra
#    finds it instead of pulling the multi-GB CUDA build.
# 2. The package with its CPU runtime, exporter, plots, test tools, Ray (the scale-out tests) and
#    the web page ([ui]); Debian's chromium for the page's browser tests where it is missing
#    (Playwright drives it; its own browser downloads are never used), and Debian's
#    libreoffice-calc for the cue sheet saved by a spreadsheet (about 50 s to install).
# 3. A second virtual environment with only the runtime ([cpu], no torch): the tests render
#    from an exported .onnx in it, proving deployments need no PyTorch.
# 4. The lint and format gate (ruff), then pytest: the suite (pyproject deselects the `slow`
#    tests), then the slow tests on their own (a few minutes more on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet torch==2.13.0
"$PYTHON" -m pip install --quiet -e ".[cpu,export,plot,test,ray,ui,live]"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
        || echo "scripts/test.sh: chromium could not be installed; the browser tests will be skipped" >&2
fi
if ! command -v libreoffice >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends libreoffice-calc >/dev/null) \
        || echo "scripts/test.sh: libreoffice-calc could not be installed; its cue sheet test will be skipped" >&2
fi

runtime_env=${GANTERP_RUNTIME_VENV:-"$PWD/.venv-runtime"}
if [ ! -x "$runtime_env/bin/ganterp-fast" ]; then
    "$PYTHON" -m venv "$runtime_env"
    "$runtime_env/bin/python" -m pip install --quiet ".[cpu]"
else  # reinstalls the package itself (a local folder always is) and adds any dependency it gained
    "$runtime_env/bin/python" -m pip install --quiet ".[cpu]"
fi
export GANTERP_RUNTIME_PYTHON="$runtime_env/bin/python"

"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m pytest -q "$@"
"$PYTHON" -m pytest -q -m slow "$@" || [ $? -eq 5 ]  # 5: none of the tests asked for is slow
