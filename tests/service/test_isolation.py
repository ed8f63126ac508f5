"""What the serving image relies on: no trainer, TensorFlow or Keras at run time, and a lean, non-root image."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from service.app import create_app
app = create_app({"MODEL_URI": sys.argv[1]})
reply = app.test_client().post("/predict", data=bytes(784), content_type="application/octet-stream")
assert reply.status_code == 200, reply.get_json()
heavy = sorted({m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "trainer", "pydantic")
                or m.startswith("google.cloud.")})  # .venv pre-imports the bare namespace via a .pth
print("imported:" + ",".join(heavy))
"""


def test_serving_imports_no_trainer_tensorflow_or_keras(model_dir):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model_dir)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "imported:", out.stdout.splitlines()[-1]


def test_service_sources_never_import_the_trainer():
    for path in (REPO / "service").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] in ("trainer", "tensorflow", "keras") for n in names), (path, names)


def test_dockerfile_is_slim_non_root_with_healthcheck():
    text = (REPO / "service" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_BASE=docker\.io/library/python:3\.\d+-slim-\w+@sha256:[0-9a-f]{64}$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_BASE}", "${PYTHON_BASE}"]  # builder, then runtime
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "--require-hashes --only-binary :all: -r requirements.lock" in instructions
    assert "--require-hashes --only-binary :all: -r build-requirements.lock" in instructions
    assert "pip wheel -q --no-deps --no-build-isolation" in instructions and "tensorflow" not in instructions.lower()
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M) and re.search(r'^CMD \["python", "-m", "service"\]', text, re.M)


def test_the_image_keeps_its_working_directory_off_sys_path_and_holds_no_secret():
    text = (REPO / "service" / "Dockerfile").read_text()
    assert re.search(r"^\s*PYTHONSAFEPATH=1", text, re.M)
    workdirs = re.findall(r"^WORKDIR (\S+)", text, re.M)
    assert workdirs[-1] not in ("/tmp", "/var/tmp", "/dev/shm")
    assert "ADMIN_TOKEN" not in text  # the operator token comes from the environment at run time
