"""Generate docs/API_REFERENCE.md from the application's own OpenAPI schema.

    .venv/bin/python docs/gen_reference.py          # rewrite docs/API_REFERENCE.md
    .venv/bin/python docs/gen_reference.py --check  # exit 1 if the committed file is stale

Every path, method, parameter, request body field, response and schema comes from
``create_app().openapi()``; nothing about the endpoints is written by hand here, so the page
cannot drift from the code (tests/docs/test_reference.py compares the committed file with a
fresh generation).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "API_REFERENCE.md"
METHODS = ("get", "post", "put", "patch", "delete")

if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def build_app() -> Any:
    """The FastAPI app, on a throwaway data directory; building the schema needs no lifespan."""
    from altdub.api.app import create_app
    from altdub.config import Settings

    with tempfile.TemporaryDirectory(prefix="altdub-ref-") as data_dir:
        return create_app(Settings(data_dir=Path(data_dir), create_demo=False), workers=False)


# --- small text helpers ---------------------------------------------------------------------------


def _text(value: str | None) -> str:
    """Docstring text for Markdown: reST ``literals`` as `code`, paragraphs kept."""
    if not value:
        return ""
    return re.sub(r"``([^`]+)``", r"`\1`", value.strip())


def _cell(value: str | None) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(_text(value).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return "#" + re.sub(r"[^a-z0-9 _-]", "", name.lower()).replace(" ", "-")


def _literal(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _type(schema: dict[str, Any]) -> str:
    """A schema as a short type: `string`, `integer or null`, `"a" or "b"`, list of [Ref](#ref)…"""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}]({_anchor(name)})"
    if "anyOf" in schema:
        parts = [_type(s) for s in schema["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return " or ".join(_literal(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "string" and schema.get("format") == "binary":
        return "file"
    if kind == "string" and schema.get("format"):
        return f"string ({schema['format']})"
    if kind == "object":
        return "object"
    if kind == "null":
        return "null"
    return kind or "any"


def _constraints(schema: dict[str, Any]) -> str:
    bits = []
    for key, label in (("minimum", ">="), ("maximum", "<="), ("minLength", "length >="), ("maxLength", "length <=")):
        if key in schema:
            bits.append(f"{label} {_literal(schema[key]).strip('`')}")
    if "default" in schema:
        bits.append(f"default {_literal(schema['default'])}")
    if schema.get("examples"):
        bits.append("e.g. " + ", ".join(_literal(v) for v in schema["examples"]))
    return "; ".join(bits)


def _describe(schema: dict[str, Any]) -> str:
    parts = [_cell(schema.get("description")), _constraints(schema)]
    return _cell(". ".join(p.rstrip(".") for p in parts if p) + ("." if any(parts) else ""))


def _fields_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(f"| `{name}` | {_type(prop)} | {'yes' if name in required else 'no'} | {_describe(prop)} |")
    for pattern, prop in schema.get("patternProperties", {}).items():
        rows.append(f"| `{pattern}` (pattern) | {_type(prop)} | no | {_describe(prop)} |")
    return rows


def _content_summary(content: dict[str, Any]) -> str:
    """The body of a response: media type and schema."""
    if not content:
        return "—"
    bits = []
    for media_type, body in content.items():
        schema = body.get("schema")
        bits.append(f"`{media_type}`" + (f": {_type(schema)}" if schema else ""))
    return "; ".join(bits)


# --- the page -------------------------------------------------------------------------------------


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _operation(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> list[str]:
    schemes = spec.get("components", {}).get("securitySchemes", {})
    summary = f"**{op.get('summary', '')}** (`operationId`: `{op['operationId']}`)"
    lines = [f"### `{method.upper()} {path}`", "", summary]
    if op.get("description"):
        lines += ["", _text(op["description"])]
    lines.append("")
    if op.get("security"):
        names = [name for requirement in op["security"] for name in requirement]
        headers = ", ".join(f"`{schemes[n].get('name', n)}` {schemes[n].get('in', '')}" for n in names)
        lines.append(f"Authentication: the {headers} (`401` when missing, unknown or revoked).")
    else:
        lines.append("Authentication: none.")

    parameters = op.get("parameters", [])
    if parameters:
        lines += ["", "Parameters:", "", "| name | in | type | required | description |", "|---|---|---|---|---|"]
        for p in parameters:
            schema = p.get("schema", {})
            description = _describe({**schema, "description": p.get("description") or schema.get("description")})
            required = "yes" if p.get("required") else "no"
            lines.append(f"| `{p['name']}` | {p['in']} | {_type(schema)} | {required} | {description} |")

    body = op.get("requestBody")
    if body:
        for media_type, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            name = schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else None
            resolved = spec["components"]["schemas"][name] if name else schema
            required = "required" if body.get("required") else "optional"
            title = f" [{name}]({_anchor(name)})" if name else ""
            lines += ["", f"Request body ({required}, `{media_type}`){title}:"]
            if resolved.get("description"):
                lines += ["", _text(resolved["description"])]
            if resolved.get("additionalProperties") is False:
                lines += ["", "Unknown fields are refused (`422`)."]
            lines += ["", *_fields_table(resolved)]

    lines += ["", "Responses:", "", "| status | meaning | body |", "|---|---|---|"]
    for status, response in op.get("responses", {}).items():
        meaning, body = _cell(response.get("description")), _content_summary(response.get("content"))
        lines.append(f"| `{status}` | {meaning} | {body} |")
    return [*lines, ""]


def _walk(routes: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(path, route) for every route, included routers flattened (a router may nest others)."""
    found = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            context = getattr(route, "include_context", None)
            found += _walk(nested.routes, prefix + getattr(context, "prefix", ""))
        else:
            found.append((prefix + getattr(route, "path", ""), route))
    return found


def _unlisted_routes(app: Any, spec: dict[str, Any]) -> list[str]:
    """Routes the app serves that the schema leaves out (the dashboard, the docs pages)."""
    own = {
        app.openapi_url: "This OpenAPI schema, as JSON.",
        app.docs_url: "Interactive API docs (Swagger UI).",
        app.redoc_url: "API docs (ReDoc).",
        app.swagger_ui_oauth2_redirect_url: "Swagger UI's OAuth2 redirect (unused).",
    }
    rows = []
    for path, route in _walk(app.routes):
        if re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path) in spec["paths"]:  # /files/{key:path} is /files/{key}
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is None:  # a mounted app
            path += "/{path}"
            what, methods = "Static files (the dashboard's script, styles and icon).", "GET"
        else:
            what = own.get(path) or (endpoint.__doc__ or "").strip().split("\n", 1)[0]
            methods = " ".join(sorted(set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"}))
        rows.append(f"| `{methods}` | `{path}` | {_cell(what)} |")
    return rows


def render() -> str:
    app = build_app()
    spec = app.openapi()
    info = spec["info"]
    operations = _operations(spec)
    lines = [
        "# altdub API reference",
        "",
        "<!-- Generated by docs/gen_reference.py from the app's OpenAPI schema. Do not edit by hand:",
        "     run `.venv/bin/python docs/gen_reference.py`; tests/docs/test_reference.py checks it is current. -->",
        "",
        f"{_text(info.get('description'))} API version {info['version']}, OpenAPI {spec['openapi']}.",
        "",
        "The running service serves the same schema at `/openapi.json` and interactive docs at `/docs`.",
        "Field and option semantics beyond the schema (formats, loudness targets, errors) are in the",
        "[README](../README.md#api).",
        "",
        "## Endpoints",
        "",
        "| method | path | summary | needs `x-api-key` |",
        "|---|---|---|---|",
    ]
    for path, method, op in operations:
        anchor = _anchor(f"{method.upper()} {path}")
        key = "yes" if op.get("security") else "no"
        lines.append(f"| {method.upper()} | [`{path}`]({anchor}) | {_cell(op.get('summary'))} | {key} |")

    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, method, op in operations:
        tags.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    lines.append("")
    for tag, ops in tags.items():
        lines += [f"## Endpoints tagged `{tag}`", ""]
        for path, method, op in ops:
            lines += _operation(spec, path, method, op)

    lines += ["## Schemas", ""]
    for name, schema in spec["components"]["schemas"].items():
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [_text(schema["description"]), ""]
        if "properties" in schema:
            lines += [*_fields_table(schema), ""]
        else:
            lines += [f"{_type(schema)}", ""]

    unlisted = _unlisted_routes(app, spec)
    if unlisted:
        lines += [
            "## Also served (not in the schema)",
            "",
            "| methods | path | what |",
            "|---|---|---|",
            *unlisted,
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run .venv/bin/python docs/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
