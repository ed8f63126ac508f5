"""The cdktf app: one Terraform stack per Google Cloud environment in config/<env>.yaml.

`python -m infra` synthesizes every gcp-target environment into cdktf.out/ (what `cdktf synth` runs, see
cdktf.json); `python -m infra.scan` adds the checkov policy scan. See infra/README.md.
"""

import os

# jsii prints an end-of-life banner for Node 20 on every run; the Node version is the platform's choice, not ours.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
