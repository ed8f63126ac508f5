"""Time the data half on the real 70,000 Fashion-MNIST images: ingest + validation, analysis, features.

Prints figures, asserts nothing (figures are not tests). Runs against a throw-away local storage root so it never
touches .mlops/. Usage: .venv/bin/python bench/bench_data.py [--source DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from settings import load_config
from trainer.data import analyze as analysis
from trainer.data import features, idx, ingest
from trainer.data.dataset import load_dataset


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": root})
        source = ingest.Source("directory", args.source)
        blobs, _ = ingest.fetch(source, settings)
        t_validate, files = timed(lambda: idx.validate_set(blobs), args.repeat)
        start = time.perf_counter()
        version = ingest.ingest(settings, source)
        t_ingest = time.perf_counter() - start
        start = time.perf_counter()
        ingest.ingest(settings, source)
        t_noop = time.perf_counter() - start
        t_load, dataset = timed(lambda: load_dataset(settings, version), args.repeat)
        t_analysis, (report, figures) = timed(lambda: analysis.analyze(dataset), args.repeat)
        t_features, table = timed(lambda: features.feature_table(dataset), args.repeat)
        start = time.perf_counter()
        import pyarrow.parquet as pq

        pq.write_table(table, io.BytesIO(), compression="zstd")
        t_parquet = time.perf_counter() - start

    o, d = report["outliers"], report["duplicates"]
    print(f"machine: {os.cpu_count()} cores (shared), python {sys.version.split()[0]}; best of {args.repeat}")
    print(f"files: {args.source} ({sum(len(b) for b in blobs.values()) / 1e6:.1f} MB gz, official={files.official})")
    print(f"validate 4 IDX files (gunzip, checks, sha256 + md5): {t_validate:.2f} s   (goal <= 1 s)")
    print(f"ingest end to end (read, validate, store, manifest):  {t_ingest:.2f} s   (goal <= 1 s)")
    print(f"re-ingest of the same files (no-op):                  {t_noop:.2f} s")
    print(f"load_dataset (read + sha256 verify + parse):          {t_load:.2f} s")
    print(f"analysis (stats, outliers, duplicates, 4 PNGs):        {t_analysis:.2f} s   (goal <= 15 s)")
    print(
        f"features (70,000 x {len(features.FEATURE_NAMES)} features + table):              {t_features:.2f} s "
        f"+ parquet {t_parquet:.2f} s   (goal <= 10 s)"
    )
    print(
        f"outliers: {o['count']} of {o['total']:,} = {o['percent']:.2f}% (seed project {o['seed_project_percent']}%); "
        f"other rules: " + ", ".join(f"{k} {v:.2f}%" for k, v in o["sensitivity_percent"].items())
    )
    print(f"outliers per class: {o['per_class']}")
    print(
        f"exact duplicates: within train {d['within_train']['redundant_copies']}, within test "
        f"{d['within_test']['redundant_copies']}, test images also in train "
        f"{d['across_splits']['test_images_also_in_train']}, label conflicts {d['label_conflicts']}"
    )


if __name__ == "__main__":
    main()
