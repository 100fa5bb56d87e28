"""deploy/Dockerfile and the per-image requirements it installs (no engine here: the build is not run)."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")


def load_image_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "deploy" / "image_requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


image_requirements = load_image_requirements()
SERVICES = sorted(ep.name for ep in metadata.entry_points(group="ata.services"))


def stages() -> list[str]:
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", DOCKERFILE, flags=re.MULTILINE)


def final_stage() -> str:
    return DOCKERFILE.split("AS runtime", 1)[1]


def test_dockerfile_is_multi_stage_on_a_slim_base() -> None:
    assert stages() == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", DOCKERFILE, flags=re.MULTILINE)
    assert "build-essential" not in final_stage(), "the compiler must stay in the build stage"
    assert "COPY --from=build /opt/ata /opt/ata" in final_stage()


def test_runs_as_a_non_root_user_with_a_healthz_healthcheck() -> None:
    user = re.findall(r"^USER\s+(\S+)", final_stage(), flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    healthcheck = re.search(r"^HEALTHCHECK .*?\n\s+CMD (.*)$", final_stage(), flags=re.MULTILINE)
    assert healthcheck and "/healthz" in healthcheck.group(1)
    assert re.search(r"ATA_HTTP_PORT=8080", final_stage()) and "EXPOSE 8080" in final_stage()


def test_installs_from_constraints_and_checks_torch_is_absent() -> None:
    install = [line for line in DOCKERFILE.splitlines() if "pip install" in line and "image_requirements.py" in line]
    assert install and "-c constraints.txt" in install[0]
    assert 'import torch' in DOCKERFILE and "exit 1" in DOCKERFILE


@pytest.mark.parametrize("service", [*SERVICES, "runtime"])
def test_every_third_party_dependency_of_an_image_is_pinned(service: str) -> None:
    pins = {image_requirements.normalise(line.split("==")[0]) for line in
            (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines() if "==" in line}
    _, third_party = image_requirements.closure(service, ROOT)
    assert third_party, "an image with no dependencies is not plausible"
    unpinned = sorted(r.name for r in third_party if r.name not in pins)
    assert unpinned == [], f"not pinned in constraints.txt: {unpinned}"


def test_strategy_image_has_the_numpy_policy_but_not_torch() -> None:
    local, third_party = image_requirements.closure("strategy", ROOT)
    names = {r.name for r in third_party}
    assert "numpy" in names and "ata-strategy" in local
    assert not names & {"torch", "stable-baselines3"}
    assert importlib.util.find_spec("ata.strategy.policy_file") is not None  # shipped in the base package


def test_execution_image_can_recover_from_the_journal(tmp_path: Path) -> None:
    for name in image_requirements.workspace_packages(ROOT):
        (tmp_path / f"{name.replace('-', '_')}-0.1.0-py3-none-any.whl").touch()
    args = image_requirements.pip_arguments("execution", tmp_path, ROOT)
    assert str(tmp_path / "ata_execution-0.1.0-py3-none-any.whl[journal]") in args
    assert str(tmp_path / "ata_journal-0.1.0-py3-none-any.whl") in args
    assert "psycopg[binary]" in args  # slim images have no libpq
    assert all("ata-" not in a for a in args), "workspace packages are given as files, never as index names"


def test_an_unknown_service_is_refused_with_the_known_names() -> None:
    with pytest.raises(SystemExit, match=r"unknown service 'nope'.*risk"):
        image_requirements.closure("nope", ROOT)


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", ".venv", ".ata"} <= set(ignored)
