"""The pipeline starter's source archive: what Cloud Run functions builds (main.py at the root, its requirements).

Why built here and byte-for-byte reproducible: the archive's hash names the uploaded object, so a change to the
starter's code redeploys the function and an unchanged one plans as no change. It holds the `starter` package, the
one contracts module it reads (contracts.starter) and the lock; tests/starter runs functions-framework on this very
archive, unpacked.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no build time in the bytes


def archive_files(repo: Path = REPO) -> dict[str, Path]:
    """Archive name -> source file. main.py and requirements.txt sit at the root, where the buildpack looks."""
    starter = repo / "starter"
    files = {"main.py": starter / "main.py", "requirements.txt": starter / "requirements.txt"}
    files.update({f"starter/{p.name}": p for p in sorted(starter.glob("*.py"))})
    files.update({f"contracts/{name}": repo / "contracts" / name for name in ("__init__.py", "starter.py")})
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the starter's archive needs {', '.join(missing)}")
    return files


def archive_bytes(repo: Path = REPO) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(archive_files(repo).items()):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def write_archive(directory: Path, repo: Path = REPO) -> Path:
    """Write `starter-<sha256 prefix>.zip` into `directory` and return its path."""
    data = archive_bytes(repo)
    path = directory / f"starter-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
