#!/usr/bin/env bash
# The project's test command: notebooks clean and in sync with imgclf/, the docs pages build, the GitHub workflows lint
# clean, then every notebook as a test.
#   tools/test.sh                      # what CI runs
#   tools/test.sh --path nbs/02_data.ipynb --flags slow
# Extra arguments go to nbdev_test. Prints a closing "N passed, N failed" line (one per notebook).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
VENV=${VENV:-.venv}
[ -x "$VENV/bin/nbdev_test" ] && export PATH="$PWD/$VENV/bin:$PATH"
fail=0

# The notebooks make their scratch folders with tempfile (as a user would). Point TMPDIR at one private
# folder and remove it at the end, pass or fail: a full run writes about 2 GB of temp files, and a machine
# that runs the tests every day would otherwise fill its disk. IMGCLF_KEEP_TMP=1 keeps it for debugging.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/imgclf-test.XXXXXX")
export TMPDIR=$scratch
cleanup() {
  [ -d "$scratch" ] || return 0
  if [ -n "${IMGCLF_KEEP_TMP:-}" ]; then echo "temp files kept in $scratch"
  else echo "removing $(du -sh "$scratch" 2>/dev/null | cut -f1) of temp files in $scratch"; rm -rf "$scratch"; fi
}
trap cleanup EXIT; trap 'exit 130' INT TERM

echo "== nbdev_clean: notebooks must already be clean"
nbdev_clean
if [ -n "$(git status --porcelain -- nbs)" ]; then
  echo "FAIL: nbdev_clean changed these notebooks (run nbdev_clean and commit):"; git status --short -- nbs; fail=1
fi
echo "== nbdev_export: imgclf/ must be in sync with the notebooks"
nbdev_export
if [ -n "$(git status --porcelain -- imgclf)" ]; then
  echo "FAIL: imgclf/ is out of sync with nbs/ (run nbdev_export and commit):"; git status --short -- imgclf; fail=1
fi
echo "== README.md must match nbs/index.ipynb"
python tools/make_readme.py --check || fail=1
echo "== GitHub workflows: actionlint (current action versions, expressions, shellcheck of run: scripts)"
if command -v actionlint >/dev/null && command -v shellcheck >/dev/null; then
  actionlint -shellcheck="$(command -v shellcheck)" .github/workflows/*.yaml || fail=1
else echo "FAIL: actionlint and shellcheck are missing (tools/install.sh installs them with the dev requirements)"; fail=1; fi
echo "== test data fetch (tools/fetch_test_data.py): checksums and layout, offline"
python tools/test_fetch_test_data.py || fail=1
echo "== docs: nbdev's doc processors run on every notebook, and the pages have no broken links or tracebacks"
python tools/preview_docs.py || fail=1
echo "== bench/gpu.py --dry-run: the GPU check's code paths on the CPU (issue 19)"; python bench/gpu.py --dry-run --out "$scratch/gpu" || fail=1

echo "== nbdev_test $*"
log=$scratch/nbdev_test.log
nbdev_test --do_print --timing --flags "${TEST_FLAGS:-e2e}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
total=$(grep -oE 'Starting [^ ]+\.ipynb' "$log" | wc -l)  # counted per occurrence: parallel workers can print two on one line
failed=$(sed -n '/Failed On The Following Notebooks/,$p' "$log" | grep -cE '^\s+\S+\.ipynb' || true)
[ "$rc" != 0 ] && [ "$failed" = 0 ] && failed=1
passed=$(( total - failed ))
cleanup; trap - EXIT  # before the summary, so that it stays the last line
[ "$fail" != 0 ] && echo "checks failed: clean/sync/readme/docs/workflows/fetch (see above)"
echo "$passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$fail" = 0 ]
