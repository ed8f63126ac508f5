"""Time `export-images` on the real 70,000 images (goal <= 60 s on 2 cores) and check every PNG decodes exactly.

Prints figures, asserts nothing. Uses a throw-away local storage root.
Usage: .venv/bin/python bench/bench_image_export.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import storage
from settings import load_config
from trainer.cli import main as trainer_main
from trainer.data.dataset import load_dataset
from trainer.data.export_images import decode_png, export_images


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        import os

        os.environ["FMNIST_STORAGE_ROOT"] = root
        settings = load_config("local")
        trainer_main(["ingest", "--source", "/usr/share/datasets/fashion-mnist"])
        start = time.perf_counter()
        import_uri, summary, _ = export_images(settings, log=lambda *_: None)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        _, _, created = export_images(settings, log=lambda *_: None)
        noop_s = time.perf_counter() - start
        dataset = load_dataset(settings)
        start = time.perf_counter()
        mismatches = 0
        lines = storage.read_text(import_uri).splitlines()
        for line in lines:
            uri = json.loads(line)["imageGcsUri"]
            split, index = Path(uri).stem.split("-")
            images = dataset.x_train if split == "train" else dataset.x_test
            mismatches += not np.array_equal(decode_png(storage.read_bytes(uri)), images[int(index)])
        verify_s = time.perf_counter() - start
        size = sum(Path(p).stat().st_size for p in storage.list_uris(str(Path(import_uri).parent)))
    print(f"export-images, {len(lines)} PNGs: {export_s:.1f} s (goal <= 60 s); second run (no-op): {noop_s:.2f} s")
    print(f"splits: {summary['counts']}; total size {size / 1e6:.1f} MB")
    print(f"re-read and decode every PNG from disk: {verify_s:.1f} s, {mismatches} pixel mismatches")


if __name__ == "__main__":
    main()
