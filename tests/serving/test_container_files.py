"""The image definition: pinned serving-only requirements, a clean Dockerfile, and what the image contains."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.serving.serving_helpers import ROOT

SERVING = ROOT / "serving"
DOCKERFILE = SERVING / "Dockerfile"
REQUIREMENTS = SERVING / "requirements.txt"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
UV = ROOT / ".tools" / "bin" / "uv"
# Serving modules the container never imports: the reference profile is written by training and read by monitoring.
NOT_IN_IMAGE = {"profile.py"}
TRAINING_ONLY = {"mlflow", "optuna", "scikit-learn", "sklearn", "pandas", "dvc", "boto3", "matplotlib"}


def _requirement_names(text: str) -> set[str]:
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", text, re.MULTILINE)}


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _body(lines: str) -> list[str]:
    return [line for line in lines.splitlines() if not line.startswith("#")]


def test_requirements_match_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "requirements.txt"
    subprocess.run([str(UV), "export", "--frozen", "--quiet", "--only-group", "serving", "--no-emit-project",
                    "--format", "requirements-txt", "-o", str(out)], cwd=ROOT, check=True, timeout=120)

    assert _body(REQUIREMENTS.read_text()) == _body(out.read_text()), "run `make requirements`"


def test_requirements_are_serving_only_and_hash_pinned() -> None:
    text = REQUIREMENTS.read_text()
    names = _requirement_names(text)

    assert {"flask", "gunicorn", "numpy", "xgboost-cpu"} <= names
    assert not names & TRAINING_ONLY, f"training packages in the image: {names & TRAINING_ONLY}"
    for block in re.split(r"\n(?=[A-Za-z0-9])", "\n".join(_body(text)).strip()):
        assert "--hash=sha256:" in block, f"not hash-pinned: {block.splitlines()[0]}"


def test_the_image_gets_the_very_libraries_training_and_the_parity_test_use() -> None:
    """One pin per package, whatever the Python (the image's 3.12, the venv's 3.11), equal to the venv's."""
    from importlib.metadata import version

    pins = [line.split(" ")[0] for line in REQUIREMENTS.read_text().splitlines() if "==" in line.split(" ")[0]]
    names = [pin.split("==")[0] for pin in pins]
    assert len(names) == len(set(names)), f"a package is pinned twice (per-Python forks): {sorted(pins)}"
    for pin in pins:
        name, pinned = pin.split("==")
        assert version(name) == pinned, f"{name}: image gets {pinned}, the venv has {version(name)}"
    assert "nvidia" not in REQUIREMENTS.read_text(), "no GPU libraries in a CPU-only image"


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the check above can fail: an unpinned base image and unpinned pip install.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")

    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode != 0
    assert "DL3007" in result.stdout


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def test_base_image_is_a_pinned_python_312_slim_for_amd64(instructions: list[tuple[str, str]]) -> None:
    froms = [args for op, args in instructions if op == "FROM"]

    assert len(froms) == 1
    # The digest is optional until someone with Docker Hub access pins it (see the Dockerfile's comment).
    assert re.fullmatch(r"--platform=linux/amd64 python:3\.12\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", froms[0]), \
        froms[0]


def test_image_runs_as_root_as_sagemakers_contract_asks(instructions: list[tuple[str, str]]) -> None:
    # AWS, "Custom Inference Code with Hosting Services": "SageMaker AI expects all containers to run with root
    # users." The base image's user is root; a USER line other than root would break that contract.
    users = [args for op, args in instructions if op == "USER"]

    assert all(user in ("root", "0", "0:0") for user in users), users
    assert "useradd" not in DOCKERFILE.read_text(), "no second user for the server to run as"
    assert "expects all containers to run with root" in DOCKERFILE.read_text(), "the Dockerfile says why"


def test_base_image_is_a_maintained_312_tag_that_dependabot_keeps_current() -> None:
    # 3.12.12-* left docker-library's python manifest in 2026-03 (no more security rebuilds).
    assert "python:3.12.12-" not in DOCKERFILE.read_text()
    dependabot = (ROOT / ".github" / "dependabot.yml").read_text()
    assert "package-ecosystem: docker" in dependabot and 'directory: "/serving"' in dependabot


def test_image_exposes_8080_and_enters_through_the_launcher(instructions: list[tuple[str, str]]) -> None:
    ops = dict(instructions)

    assert ops["EXPOSE"] == "8080"
    entrypoint = json.loads(ops["ENTRYPOINT"])  # exec form is a JSON array; shell form would not parse
    assert entrypoint == ["/opt/program/serving/serve"]
    assert json.loads(ops["CMD"]) == ["serve"]


def test_image_installs_only_the_pinned_requirements(instructions: list[tuple[str, str]]) -> None:
    installs = [args for op, args in instructions if op == "RUN" and "pip install" in args]

    assert len(installs) == 1
    assert "--require-hashes" in installs[0]
    assert "-r /opt/program/requirements.txt" in installs[0]


def test_image_copies_every_serving_module_and_the_ignore_file_lets_them_in(
        instructions: list[tuple[str, str]]) -> None:
    copied = set()
    for op, args in instructions:
        if op == "COPY" and args.endswith("/opt/program/serving/"):
            copied |= set(args.split()[:-1])
    allowed = {line[1:] for line in (SERVING / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    modules = {p.name for p in SERVING.glob("*.py")}

    assert modules - NOT_IN_IMAGE | {"serve"} == copied, "a serving module missing from the image would fail at import"
    assert copied | {"requirements.txt"} == allowed
    for name in copied - {"serve"}:
        imported = re.findall(r"^\s*(?:from|import) serving\.(\w+)", (SERVING / name).read_text(), re.MULTILINE)
        assert not {f"{m}.py" for m in imported} & NOT_IN_IMAGE, f"{name} imports a module the image lacks"


@pytest.mark.pypi
@pytest.mark.timeout(300)
def test_the_image_requirements_install_for_linux_amd64_and_python_312_with_hashes_checked() -> None:
    # `make image-deps-check` asks PyPI for exactly what the image's `pip install --require-hashes
    # --only-binary=:all:` would take on linux/amd64 with the Dockerfile's Python; a pin without such a wheel, or
    # a hash PyPI does not serve, fails here before an image build would.
    result = subprocess.run(["make", "--no-print-directory", "image-deps-check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=290, check=False)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    pins = len(_requirement_names(REQUIREMENTS.read_text()))
    assert f"image-deps-check: {pins} wheels for linux/amd64, Python 3.12, hashes match" in result.stdout


@pytest.mark.pypi
@pytest.mark.timeout(300)
def test_the_image_requirements_check_fails_on_a_hash_pypi_does_not_serve(tmp_path: Path) -> None:
    flask = next(line.split()[0] for line in REQUIREMENTS.read_text().splitlines() if line.startswith("flask=="))
    tampered = tmp_path / "requirements.txt"
    tampered.write_text(f"{flask} --hash=sha256:{'0' * 64}\n")

    result = subprocess.run(["make", "--no-print-directory", "image-deps-check", f"IMAGE_REQUIREMENTS={tampered}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=290, check=False)

    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr
