"""What ``pip install`` gets for one service image (used by ``deploy/Dockerfile``; importable by tests).

Contract:
- ``python deploy/image_requirements.py SERVICE WHEEL_DIR`` prints one requirement per line: the
  local wheel file (``WHEEL_DIR/ata_<pkg>-<version>-*.whl``) of every workspace package the service
  needs, transitively, each with the extras the image enables; plus ``psycopg[binary]`` when
  psycopg is in the closure (slim images have no libpq). Giving local packages as files means pip
  never looks for an ``ata-*`` name on a package index.
- Third-party dependencies are left to pip, pinned by ``constraints.txt`` (``-c``).
- ``SERVICE`` is a service name under ``services/`` or ``runtime`` (``ata-runtime`` alone: the
  ``ata`` CLI for jobs such as ``ata topics provision``).
- Optional extras are not installed except those in :data:`IMAGE_EXTRAS`; in particular the
  strategy image gets no ``rl`` extra (torch): the live service runs the exported numpy policy.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PREFIX = "ata-"
#: Extras an image installs on top of the package's plain dependencies.
IMAGE_EXTRAS: dict[str, tuple[str, ...]] = {
    # Execution recovers from the journal at start, which needs ata-journal (and so psycopg).
    "ata-execution": ("journal",),
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?")


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised: lower case, "-" separators
    extras: tuple[str, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Requirement:
        match = _NAME.match(text)
        if match is None:
            raise ValueError(f"cannot parse requirement {text!r}")
        extras = tuple(e.strip() for e in (match.group(3) or "").split(",") if e.strip())
        return cls(normalise(match.group(1)), extras, text)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def workspace_packages(root: Path = ROOT) -> dict[str, Path]:
    """Distribution name → project directory, for every ``libs/*`` and ``services/*`` package."""
    found = {}
    for pyproject in sorted([*root.glob("libs/*/pyproject.toml"), *root.glob("services/*/pyproject.toml")]):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        found[normalise(project["name"])] = pyproject.parent
    return found


def _project(directory: Path) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project


def closure(service: str, root: Path = ROOT) -> tuple[dict[str, tuple[str, ...]], list[Requirement]]:
    """(local package → enabled extras, third-party requirements) of one image, transitively."""
    packages = workspace_packages(root)
    top = "ata-runtime" if service == "runtime" else f"{LOCAL_PREFIX}{service}"
    if top not in packages:
        raise SystemExit(f"unknown service {service!r}; known: runtime, "
                         + ", ".join(sorted(n.removeprefix(LOCAL_PREFIX) for n in packages)))
    local: dict[str, tuple[str, ...]] = {}
    third_party: dict[str, Requirement] = {}
    pending = [Requirement(top, IMAGE_EXTRAS.get(top, ()), top)]
    while pending:
        req = pending.pop()
        extras = tuple(sorted({*local.get(req.name, ()), *req.extras, *IMAGE_EXTRAS.get(req.name, ())}))
        if req.name in local and extras == local[req.name]:
            continue
        local[req.name] = extras
        project = _project(packages[req.name])
        optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
        texts = [*project.get("dependencies", []), *(t for e in extras for t in optional.get(e, []))]  # type: ignore[misc]
        for text in texts:
            dep = Requirement.parse(text)
            if dep.name in packages:
                pending.append(dep)
            else:
                third_party.setdefault(dep.name, dep)
    return local, sorted(third_party.values(), key=lambda r: r.name)


def pip_arguments(service: str, wheel_dir: Path, root: Path = ROOT) -> list[str]:
    """The requirement arguments for ``pip install -c constraints.txt`` (see the module docstring)."""
    local, third_party = closure(service, root)
    packages = workspace_packages(root)
    args = []
    for name, extras in sorted(local.items()):
        version = _project(packages[name])["version"]
        wheels = sorted(wheel_dir.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel of {name} {version} in {wheel_dir}, found {len(wheels)}")
        args.append(f"{wheels[0]}[{','.join(extras)}]" if extras else str(wheels[0]))
    if any(r.name == "psycopg" for r in third_party):
        args.append("psycopg[binary]")
    return args


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: image_requirements.py SERVICE WHEEL_DIR")
    print("\n".join(pip_arguments(sys.argv[1], Path(sys.argv[2]))))
