"""docs/api.md is generated from the OpenAPI schema and must match it."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from django.core.management import call_command

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def generate() -> str:
    out = StringIO()
    call_command("apireference", stdout=out)
    return out.getvalue()


def test_committed_api_reference_is_current():
    fresh = generate()
    committed = API_MD.read_text(encoding="utf-8") if API_MD.exists() else ""
    assert committed == fresh, "docs/api.md is stale: run `make docs`"


def test_api_reference_is_deterministic_and_complete():
    text = generate()
    assert text == generate()
    assert "### POST /api/v1/jobs/{id}/run" in text
    assert "## Errors" in text
    assert '{"error": "validation_error", "message": "Invalid request", "details": {' in text
    for code in ("validation_error", "not_found", "not_authenticated", "internal_error"):
        assert f"`{code}`" in text


def test_output_option_writes_the_file(tmp_path):
    target = tmp_path / "api.md"
    call_command("apireference", output=str(target))
    assert target.read_text(encoding="utf-8") == generate()
