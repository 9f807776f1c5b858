"""The OpenAPI document, told the truth: real request bodies, status codes and media types.

FastAPI describes what its signatures say. The inference routes read their bodies themselves
(one parse into the protocol models, see `api/openai.py`), so FastAPI sees no body; every
validation failure is answered 400 in OpenAI's envelope (`app._validation_error`), not 422;
and `/metrics` is Prometheus text. Schema-driven clients and fuzzers (schemathesis runs in
`tests/integration/test_openapi_fuzz.py`) read this document, so it says what the server does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest, EmbeddingRequest
from proxy.protocol.errors import ErrorEnvelope
from proxy.protocol.responses import ResponsesRequest

INFERENCE_BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/responses": ResponsesRequest,
}
_REF = "#/components/schemas/{model}"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """Build (once) and return the app's OpenAPI document."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, summary=app.summary,
                           routes=app.routes)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    _add_model(schemas, ErrorEnvelope)
    error = {"description": "Invalid request (OpenAI's error envelope)", "content": {
        "application/json": {"schema": {"$ref": _REF.format(model=ErrorEnvelope.__name__)}}}}
    for path, model in INFERENCE_BODIES.items():
        operation = document["paths"][path]["post"]
        _add_model(schemas, model)
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF.format(model=model.__name__)}}}}
        operation["responses"]["400"] = error
    for item in document["paths"].values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = error
    document["paths"]["/metrics"]["get"]["responses"]["200"]["content"] = {
        "text/plain": {"schema": {"type": "string"}}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
