"""schemas/ is generated from the code (`make schemas`) and must be committed fresh and compatible."""

from __future__ import annotations

from pathlib import Path

from ata.runtime import schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def test_schemas_directory_is_fresh() -> None:
    stale = schemas.stale_files(SCHEMA_DIR)
    assert stale == [], f"schemas/ is stale, run `make schemas` and commit: {stale}"


def test_code_is_backward_compatible_with_committed_schemas() -> None:
    previous = schemas.baseline(SCHEMA_DIR)
    issues = schemas.check_compatibility(previous.files, schemas.render())
    assert [str(i) for i in issues] == [], f"incompatible with {previous.origin}"
