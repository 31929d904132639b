#!/usr/bin/env bash
# GPU proof in one command (issue 11), for the lent GPU machine: install the wheels that travel
# in .whl/, then run benchmarks/gpu_suite.py; its table also goes to $OUT/gpu_suite.md (and the
# whole output to $OUT/gpu_suite.log) when $OUT is set.
#
#   bash benchmarks/gpu_suite.sh [gpu_suite.py options]   # on the GPU machine, e.g. --parts speeds
#   bash benchmarks/gpu_suite.sh fetch                    # HERE, once: fill .whl/ (needs PyPI)
#
# With the device tool: run(command="bash benchmarks/gpu_suite.sh", carry=[".whl"], timeout_s=600)
#
# The lent machine has Python 3.12, torch 2.11, torchvision 0.26, numpy, scipy, h5py, pillow,
# pyyaml, tqdm, matplotlib, and no network. What the suite needs besides travels in .whl/
# (git-ignored: .gitignore and .git/info/exclude; never commit it), about 31 MiB:
#
# * snakemake and its dependencies (the demo_dag part), jsonschema (config validation) and
#   pytest (the cuda_tests part), at constraints.txt's versions, as cp312 manylinux or
#   pure-Python wheels. `fetch` runs, for each NAME==VERSION of WHEELS below:
#     python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl NAME==VERSION
#   e.g. ... -d .whl snakemake==9.27.1   (pulp==3.3.2 is the big one: 16 MiB, CBC binaries)
# * connection_pool==0.0.3 (a snakemake dependency) exists only as a source archive; it is
#   pure Python, so `fetch` builds its py3-none-any wheel here:
#     python -m pip wheel --no-deps -w .whl connection_pool==0.0.3
# * pydensecrf2==1.1 (the dense CRF of IR-label mining) exists only as a source archive with a
#   C++ extension, and no Python 3.12 is here to build it for. `fetch` downloads the archive
#   and setuptools; this script builds it on the lent machine when that has g++ and Python's
#   headers (its .cpp files are pre-generated, no Cython needed):
#     python -m pip download --no-deps --no-binary=:all: -d .whl pydensecrf2==1.1
#     python -m pip download --no-deps --only-binary=:all: -d .whl setuptools==84.2.1
#   Without it the demo_dag part is skipped and paper_scale mines without the CRF (it says so).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  annotated-types==0.8.0 argparse-dataclass==2.0.0 attrs==26.1.0 certifi==2026.10.18
  charset-normalizer==3.5.2 conda-inject==1.3.2 configargparse==1.9.0 docutils==0.22.4
  dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6
  humanfriendly==10.0 idna==3.20 immutables==0.21 jinja2==3.1.6 markupsafe==3.0.4
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  jupyter-core==5.9.1 nbformat==5.11.1 traitlets==5.16.1 packaging==25.0 platformdirs==4.14.5
  psutil==7.2.2 pulp==3.3.2 pydantic==2.14.3 pydantic-core==2.50.4 typing-inspection==0.4.5
  typing-extensions==4.16.0 requests==2.34.2 urllib3==2.8.0 smart-open==7.7.1 wrapt==2.5.2
  smmap==5.0.3 sqlalchemy==2.0.58 sqlmodel==0.0.37 tabulate==0.10.0 tenacity==9.2.1
  throttler==1.2.3 yte==1.9.4
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0
)
PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

fetch() {
  local python=${PYTHON:-python3} failed=0
  [ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
  mkdir -p .whl .git/info
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for spec in "${WHEELS[@]}"; do
    "$python" -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d .whl "$spec" \
      || { echo "fetch: no cp312 wheel for $spec" >&2; failed=1; }
  done
  "$python" -m pip wheel -q --no-deps -w .whl connection_pool==0.0.3 || failed=1
  "$python" -m pip download -q --no-deps --no-binary=:all: -d .whl pydensecrf2==1.1 || failed=1
  "$python" -m pip download -q --no-deps --only-binary=:all: -d .whl setuptools==84.2.1 || failed=1
  du -sh .whl
  ls .whl | wc -l
  return $failed
}

install_wheels() {
  local site=/tmp/site
  shopt -s nullglob
  local wheels=(.whl/*.whl)
  if [ ${#wheels[@]} -gt 0 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "${wheels[@]}" || echo "gpu_suite.sh: installing .whl/ failed; the suite says what is missing"
  else
    echo "gpu_suite.sh: no .whl/ folder: snakemake, pytest and pydensecrf2 will be missing (run 'fetch' where PyPI is reachable)"
  fi
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$site/bin:$PATH"
  local sdists=(.whl/pydensecrf2-*.tar.gz)
  if ! python3 -c 'import pydensecrf.densecrf' 2>/dev/null && [ ${#sdists[@]} -gt 0 ]; then
    if command -v g++ >/dev/null && python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
      echo "gpu_suite.sh: building pydensecrf2 from ${sdists[0]} (g++, about a minute)"
      python3 -m pip wheel -q --no-index --no-deps --no-build-isolation -w /tmp/pcam-built "${sdists[0]}" \
        && python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" /tmp/pcam-built/pydensecrf2-*.whl \
        || echo "gpu_suite.sh: building pydensecrf2 failed: IR-label mining runs without the dense CRF"
    else
      echo "gpu_suite.sh: no g++ or no Python headers here: pydensecrf2 not built, IR-label mining runs without the dense CRF"
    fi
  fi
}

if [ "${1:-}" = "fetch" ]; then
  fetch
  exit $?
fi

start=$(date +%s)
install_wheels
echo "gpu_suite.sh: wheels ready in $(( $(date +%s) - start )) s"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  python3 benchmarks/gpu_suite.py --out "$OUT/gpu_suite.md" "$@" 2>&1 | tee "$OUT/gpu_suite.log"
else
  python3 benchmarks/gpu_suite.py "$@"
fi
