"""`GET /openapi.json`: the OpenAPI 3.1 description of the gateway's HTTP API, generated
from the operation table (operations.py) and the gateway's settings.

Every body schema comes from the msgspec types the gateway decodes requests with and
encodes answers from (`msgspec.json.schema_components`); every parameter from the reader
the handler uses (params.py); the bounds that are settings (the configured lead sources,
the most leads a job takes) from the settings. So the document states what the routes
accept and cannot drift from them. The checks beyond the types are stated by
validation.py (`document_rules`), from the patterns it checks with. It is built once per
app and served as bytes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from services.gateway.config import GatewaySettings, load_settings
from services.gateway.keys import SETTINGS
from services.gateway.operations import (
    EXTRA_TYPES,
    OPENAPI_DOCUMENT,
    OPENAPI_PATH,
    OPERATIONS,
    Answer,
    Operation,
    add_routes,
)
from services.gateway.problems import STATUS_TYPES, ProblemDetails
from services.gateway.validation import document_rules
from shared.config import EnvReader

__all__ = ["OPENAPI_PATH", "add_api", "build_openapi"]

REF = "#/components/schemas/{name}"
PROBLEM_JSON = "application/problem+json"
AUTH_SCHEME = "bearerAuth"
PUBLIC: list[dict[str, list[str]]] = []  # an empty `security` overrides the global one


def add_api(app: web.Application) -> None:
    """Serve every operation of the table, and the document that describes them."""
    add_routes(app)
    app[OPENAPI_DOCUMENT] = msgspec.json.encode(build_openapi(app[SETTINGS]))


def build_openapi(settings: GatewaySettings | None = None) -> dict[str, Any]:
    """The document for these settings (default: a dev gateway's)."""
    if settings is None:
        settings = load_settings(EnvReader({}))
    types = msgspec_types()
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref = dict(zip(types, refs, strict=True))
    document_rules(schemas, settings.sources, settings.max_leads_per_job)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = operation_doc(op, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow API",
            "version": "1",
            "description": "Enrich jobs for B2B leads. Errors are RFC 9457 problem details.",
        },
        "security": [{AUTH_SCHEME: []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": problem_responses(),
            "securitySchemes": {
                AUTH_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from LEADFLOW_API_KEYS (dev without keys: no auth).",
                }
            },
        },
    }


def msgspec_types() -> list[Any]:
    """Every msgspec type the table names, each once, in table order."""
    found: list[Any] = [ProblemDetails]

    def add(candidate: Any) -> None:
        if isinstance(candidate, type) or hasattr(candidate, "__metadata__"):
            if candidate not in found:
                found.append(candidate)
        elif isinstance(candidate, dict):
            for value in candidate.values():
                add(value)
        elif isinstance(candidate, list):
            for value in candidate:
                add(value)

    for op in OPERATIONS:
        if op.body is not None:
            add(op.body)
        add(op.body_media)
        for answer in op.answers.values():
            if answer.body is not None:
                add(answer.body)
            add(answer.media)
    for extra in EXTRA_TYPES:
        add(extra)
    return found


def operation_doc(op: Operation, ref: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        **({"description": op.description} if op.description else {}),
        "tags": [op.tag],
    }
    if op.public:
        doc["security"] = PUBLIC
    if op.params:
        doc["parameters"] = [param.openapi() for param in op.params]
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": ref[op.body]},
                **{media: resolved(spec, ref) for media, spec in op.body_media.items()},
            },
        }
    responses: dict[str, Any] = {
        str(status): answer_doc(answer, ref) for status, answer in op.answers.items()
    }
    for status in op.all_problems:
        responses.setdefault(
            str(status), {"$ref": f"#/components/responses/{STATUS_TYPES[status][0]}"}
        )
    doc["responses"] = dict(sorted(responses.items()))
    return doc


def answer_doc(answer: Answer, ref: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if answer.body is not None:
        content["application/json"] = {"schema": ref[answer.body]}
    for media_type, schema in answer.media.items():
        content[media_type] = {"schema": resolved(schema, ref)}
    doc: dict[str, Any] = {"description": answer.description}
    if content:
        doc["content"] = content
    if answer.headers:
        doc["headers"] = answer.headers
    return doc


def resolved(schema: Any, ref: dict[Any, dict[str, Any]]) -> Any:
    """A schema with the msgspec types in it replaced by their references."""
    if isinstance(schema, dict):
        return {key: resolved(value, ref) for key, value in schema.items()}
    if isinstance(schema, list):
        return [resolved(value, ref) for value in schema]
    if isinstance(schema, type) and schema in ref:
        return ref[schema]
    return schema


def problem_responses() -> dict[str, Any]:
    """One reusable response per problem status, titled as problems.STATUS_TYPES titles it."""
    return {
        slug: {
            "description": title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(name="ProblemDetails")}}},
        }
        for slug, title in STATUS_TYPES.values()
    }
