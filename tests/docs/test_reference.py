"""docs/API_REFERENCE.md is generated from the app's OpenAPI schema and must not drift from it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "docs" / "gen_reference.py"
REFERENCE = ROOT / "docs" / "API_REFERENCE.md"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(gen: ModuleType) -> str:
    return gen.render()


@pytest.fixture(scope="module")
def schema(gen: ModuleType) -> dict:
    return gen.build_app().openapi()


def test_committed_reference_is_the_generated_one(generated: str) -> None:
    committed = REFERENCE.read_text(encoding="utf-8")
    assert committed == generated, "docs/API_REFERENCE.md is stale: run .venv/bin/python docs/gen_reference.py"


def test_every_path_and_method_of_the_schema_has_a_section(schema: dict, generated: str) -> None:
    for path, item in schema["paths"].items():
        assert f"`{path}`" in generated, path
        for method in item:
            assert f"### `{method.upper()} {path}`" in generated, f"{method.upper()} {path}"


def test_every_status_code_parameter_and_body_field_appears(schema: dict, generated: str) -> None:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            heading = f"### `{method.upper()} {path}`"
            section = generated.split(heading, 1)[1].split("\n### ", 1)[0]
            for status in operation["responses"]:
                assert f"| `{status}` |" in section, (heading, status)
            for parameter in operation.get("parameters", []):
                assert f"| `{parameter['name']}` | {parameter['in']} |" in section, (heading, parameter["name"])
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = content["schema"]
                if "$ref" in body:
                    body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
                for field in [*body.get("properties", {}), *body.get("patternProperties", {})]:
                    assert f"| `{field}`" in section, (heading, field)


def test_every_export_option_is_documented_with_its_description(schema: dict, generated: str) -> None:
    options = schema["components"]["schemas"]["ExportRequest"]["properties"]
    assert {"output_format", "audio_bitrate", "sample_rate", "channels", "loudness", "stem"} <= set(options)
    for name, option in options.items():
        row = next((line for line in generated.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        if option.get("description"):
            assert " ".join(option["description"].split()) in row.replace("\\|", "|"), name


def test_the_generator_check_mode_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
