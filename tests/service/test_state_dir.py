"""State directories of masters that died without cleaning up are removed at the next start; live ones stay."""

import os
import subprocess
import sys

from service.state_dir import remove_leftovers


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_dead_processes_are_removed_and_others_kept(tmp_path):
    dead = tmp_path / f"fmnist-service-{dead_pid()}-abcd1234"
    (dead / "prometheus").mkdir(parents=True)
    (dead / "prometheus" / "counter_1.db").write_bytes(b"x")
    dead_cache = tmp_path / f"fmnist-model-{dead_pid()}-abcd1234"
    dead_cache.mkdir()
    alive = tmp_path / f"fmnist-service-{os.getpid()}-abcd1234"
    alive.mkdir()
    unrelated = tmp_path / "fmnist-service-notapid"
    unrelated.mkdir()
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / f"fmnist-service-{dead_pid()}-link"
    link.symlink_to(tmp_path / "elsewhere")

    removed = remove_leftovers(str(tmp_path))

    assert sorted(removed) == sorted([str(dead), str(dead_cache)])
    assert not dead.exists() and not dead_cache.exists()
    assert alive.is_dir() and unrelated.is_dir() and (tmp_path / "elsewhere").is_dir() and link.is_symlink()
