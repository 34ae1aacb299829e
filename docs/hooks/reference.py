"""The docs site's Reference, generated from the code at build time (an mkdocs hook).

- ``reference/declaration.md`` (and the JSON schema beside it): ``PipelineDeclaration``'s
  pydantic JSON schema, one table per model;
- ``reference/cli.md``: the ``ml-assets`` command line from its argparse parser;
- ``reference/api/<pipeline>.md`` (and the OpenAPI document beside it): each pipeline's
  prediction service, from the FastAPI app's OpenAPI document, built without starting a server;
- ``reference/configuration.md`` is written by hand (what each variable means) and checked
  here against the variables the code reads: a variable the code reads and the page lacks, or
  one the page names and no code reads, fails the build; the page gets where each is read.

Nothing generated is committed; ``mkdocs build --strict`` fails on any broken link or anchor.
"""

import argparse
import ast
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

PROJECT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("ml_assets", "resources", "serving", "sensors", "jobs")
VARIABLE = re.compile(r"^(ML_ASSETS|DAGSTER|MLFLOW|AWS)_[A-Z0-9_<>]*[A-Z0-9>]$")
"""A string literal the code reads as an environment variable (``<NAME>``: a pipeline's)."""
CONFIGURATION_PAGE = "reference/configuration.md"
API_FOLDER = "reference/api"
CONSTRAINTS = {
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minItems": "at least {} item(s)",
    "maxItems": "at most {} items",
    "pattern": "matches `{}`",
}


def _pipelines() -> list[str]:
    from ml_assets import pipelines

    return pipelines.names()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Add each registered pipeline's API page under *Reference → Services' API*."""
    pages = [{name: f"{API_FOLDER}/{name}.md"} for name in _pipelines()]
    for section in config.nav or []:
        reference = section.get("Reference") if isinstance(section, dict) else None
        if reference is not None:
            reference.append({"Services' API": [f"{API_FOLDER}/index.md", *pages]})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, content in _generated():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != CONFIGURATION_PAGE:
        return markdown
    return markdown + _where_variables_are_read(markdown)


def _generated() -> Iterator[tuple[str, str]]:
    from ml_assets.contract.declaration import PipelineDeclaration

    schema = PipelineDeclaration.model_json_schema()
    yield "reference/pipeline-declaration.schema.json", json.dumps(schema, indent=2)
    yield "reference/declaration.md", declaration_page(schema)
    yield "reference/cli.md", cli_page(_parser())
    documents = _openapi_documents()
    yield f"{API_FOLDER}/index.md", api_index(documents)
    for name, document in documents.items():
        yield f"{API_FOLDER}/{name}.openapi.json", json.dumps(document, indent=2)
        yield f"{API_FOLDER}/{name}.md", api_page(name, document)


# --- JSON schema → tables (the declaration's models, the services' request and answers) ---


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _type(schema: dict[str, Any]) -> str:
    """One line saying what a value of ``schema`` is, references linked to their table."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return " or ".join(_type(option) for option in schema[combined])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of string to {_type(schema['additionalProperties'])}"
    if kind == "null":
        return "null"
    text = kind or "any JSON value"
    if schema.get("format"):
        text += f" ({schema['format']})"
    return text


def _rules(schema: dict[str, Any]) -> list[str]:
    """The schema's constraints in words (those of every alternative of an ``anyOf``)."""
    rules = [text.format(schema[key]) for key, text in CONSTRAINTS.items() if key in schema]
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        rules += _rules(option)
    return rules


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_table(name: str, schema: dict[str, Any], level: int = 3) -> str:
    """A heading (anchored by the model's name), its description and one row per field."""
    lines = [f"{'#' * level} `{name}` {{#{_anchor(name)}}}", ""]
    if schema.get("description"):
        lines += [schema["description"].strip(), ""]
    properties = schema.get("properties", {})
    if not properties:
        lines += [f"A value of type {_type(schema)}.", ""]
        return "\n".join(lines)
    required = set(schema.get("required", []))
    lines += ["| field | type | required / default | meaning |", "|---|---|---|---|"]
    for field, spec in properties.items():
        if field in required:
            given = "required"
        elif "default" in spec:
            given = f"`{json.dumps(spec['default'])}`"
        else:
            given = "optional"
        rules = _rules(spec)
        meaning = (
            spec.get("description", "") + (f" Rule: {', '.join(rules)}." if rules else "")
        ).strip()
        lines.append(f"| `{field}` | {_cell(_type(spec))} | {given} | {_cell(meaning)} |")
    return "\n".join([*lines, ""])


def declaration_page(schema: dict[str, Any]) -> str:
    definitions = schema.get("$defs", {})
    return "\n".join(
        [
            "# Declaration reference",
            "",
            "Every key of `ml_assets/pipelines/<name>/pipeline.yaml`, generated at build time from",
            "the pydantic models of `ml_assets/contract/` (`PipelineDeclaration` and the models it",
            "holds). A key that is not listed is refused when the definitions load; so is a value",
            "that breaks a rule, with the file, the key and the reason. The cross-checks between",
            "sections (a `rule_of` naming a declared range, a feature the feature schema has) are",
            "described in the [user guide](../user-guide/declaration.md).",
            "",
            "The same schema as a file, for an editor that validates YAML against a JSON schema:",
            "[pipeline-declaration.schema.json](pipeline-declaration.schema.json).",
            "",
            model_table("PipelineDeclaration", schema, level=2),
            "## The models it holds",
            "",
            *(model_table(name, definitions[name]) for name in sorted(definitions)),
        ]
    )


# --- the command line, from its argparse parser ---


def _parser() -> argparse.ArgumentParser:
    from ml_assets.cli import parser

    return parser()


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _argument_row(action: argparse.Action) -> str:
    name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    details = [action.help or ""]
    if action.choices:
        details.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
        details.append(f"default `{action.default}`")
    return f"| {name} | {_cell('; '.join(filter(None, details)))} |"


def cli_page(parser: argparse.ArgumentParser) -> str:
    commands = _subcommands(parser)
    helps = {a.dest: a.help for a in commands._choices_actions}
    lines = [
        "# Command line",
        "",
        parser.description,
        "",
        "Generated at build time from the parser of `ml_assets/cli.py`; run",
        f"`uv run {parser.prog} COMMAND --help` for the same text.",
        "",
    ]
    for name, command in commands.choices.items():
        arguments = [a for a in command._actions if not isinstance(a, argparse._HelpAction)]
        lines += [f"## `{name}`", "", f"{helps.get(name, '')}.", ""]
        lines += ["```text", command.format_usage().strip(), "```", ""]
        if arguments:
            lines += ["| argument | meaning |", "|---|---|", *map(_argument_row, arguments), ""]
    return "\n".join(lines)


# --- the services' API, from their OpenAPI documents ---


def _openapi_documents() -> dict[str, dict[str, Any]]:
    """Each pipeline's service's OpenAPI document, as ``GET /openapi.json`` answers it: the app
    is built (no model loaded, no server started, nothing written) and asked for it."""
    from ml_assets import pipelines
    from resources.table_snapshots import TableSnapshots
    from serving.app import create_app
    from serving.spec import served_model

    documents = {}
    with tempfile.TemporaryDirectory() as nowhere:
        for name in _pipelines():
            served = served_model(pipelines.declaration(name), pipelines.serving_hooks(name))
            app = create_app(served, TableSnapshots(nowhere), token="docs", home="docs")  # noqa: S106 (never serves)
            documents[name] = app.openapi()
    return documents


def api_index(documents: dict[str, dict[str, Any]]) -> str:
    rows = [
        f"| [{name}]({name}.md) | {document['info']['title']} | "
        f"[{name}.openapi.json]({name}.openapi.json) |"
        for name, document in documents.items()
    ]
    return "\n".join(
        [
            "# Services' API",
            "",
            "Each pipeline has its own prediction service (`ml-assets serve NAME`), described by",
            "an OpenAPI 3.1 document built from the pipeline's declaration; a running service",
            "serves it at `GET /openapi.json` and as a page to try requests at `GET /docs`. The",
            "pages here are generated from the same documents at build time. How the endpoints",
            "behave (types, warnings, errors, reloads) is told in the",
            "[user guide](../../user-guide/serving.md).",
            "",
            "| pipeline | service | OpenAPI document |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def _schema_link(content: dict[str, Any]) -> str:
    """The body's schema (JSON), or its media types, or that there is none."""
    schema = content.get("application/json", {}).get("schema")
    if schema:
        return _cell(_type(schema))
    return ", ".join(f"`{media}`" for media in content) or "no body"


def api_page(name: str, document: dict[str, Any]) -> str:
    info = document["info"]
    lines = [
        f"# {name}: {info['title']}",
        "",
        f"{info.get('description', '')} API version {info['version']}; the whole document:",
        f"[{name}.openapi.json]({name}.openapi.json).",
        "",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", f"**{operation.get('summary', '')}.**"]
            if operation.get("description"):
                lines += ["", operation["description"].strip()]
            if operation.get("security"):
                lines += ["", "Needs the admin token: `Authorization: Bearer <token>`."]
            for parameter in operation.get("parameters", []):
                lines += [
                    "",
                    f"Parameter `{parameter['name']}` ({parameter['in']}): "
                    f"{parameter.get('description', '')}",
                ]
            body = operation.get("requestBody")
            if body:
                needed = "required" if body.get("required") else "optional"
                lines += ["", f"Request body ({needed}): {_schema_link(body['content'])}."]
                if body.get("description"):
                    lines += ["", body["description"].strip()]
            lines += ["", "| status | meaning | body |", "|---|---|---|"]
            for status, answer in operation.get("responses", {}).items():
                lines.append(
                    f"| {status} | {_cell(answer.get('description', ''))} | "
                    f"{_schema_link(answer.get('content', {}))} |"
                )
            lines.append("")
    schemas = document.get("components", {}).get("schemas", {})
    lines += ["## Schemas", ""]
    lines += [model_table(schema, schemas[schema]) for schema in sorted(schemas)]
    return "\n".join(lines)


# --- configuration variables, checked against the code ---


def variables_read() -> dict[str, set[str]]:
    """Every environment variable named in the product code, and the modules naming it."""
    found: dict[str, set[str]] = {}
    for package in CODE_PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            module = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                text = _literal(node)
                if text is not None and VARIABLE.match(text):
                    found.setdefault(text, set()).add(module.removesuffix(".__init__"))
    return found


def _literal(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with ``<NAME>`` for each value put in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "<NAME>" for v in node.values)
    return None


def documented_variables(markdown: str) -> set[str]:
    """The variables named in the first column of the page's tables."""
    cells = re.findall(r"^\|\s*([^|]+?)\s*\|", markdown, flags=re.MULTILINE)
    return {v for cell in cells for v in re.findall(r"`([A-Z][A-Z0-9_<>]+)`", cell)}


def _where_variables_are_read(markdown: str) -> str:
    read, documented = variables_read(), documented_variables(markdown)
    undocumented, unread = sorted(set(read) - documented), sorted(documented - set(read))
    if undocumented or unread:
        raise PluginError(
            f"{CONFIGURATION_PAGE} is out of date with the code: read but not documented: "
            f"{', '.join(undocumented) or 'none'}; documented but read nowhere: "
            f"{', '.join(unread) or 'none'}"
        )
    profile = dict(
        line.split("=", 1)
        for line in (PROJECT / "deploy" / "production.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    lines = [
        "",
        "## Where each is read",
        "",
        "Generated at build time from the code (the build fails when the tables above miss a",
        "variable the code reads, or name one it does not); *production profile* is the value",
        "`deploy/production.env` gives every process of `ml-assets prod up` and of the compose",
        "file.",
        "",
        "| variable | read in | production profile |",
        "|---|---|---|",
    ]
    for name in sorted(read):
        modules = ", ".join(f"`{m}`" for m in sorted(read[name]))
        lines.append(
            f"| `{name}` | {modules} | {f'`{profile[name]}`' if name in profile else ''} |"
        )
    return "\n".join([*lines, ""])
