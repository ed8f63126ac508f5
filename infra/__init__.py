"""The cdktf app: one Terraform stack per Google Cloud environment in config/<env>.yaml.

`python -m infra` synthesizes every gcp-target environment into cdktf.out/ (what `cdktf synth` runs, see
cdktf.json); `python -m infra.scan` adds the checkov policy scan. See infra/README.md.
"""
