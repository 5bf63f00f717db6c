"""The receiver's OpenAPI document, built from the vendor registry (for docs and schemathesis).

Written out rather than generated from docstrings: Starlette's SchemaGenerator needs PyYAML, which
the receiver does not otherwise depend on.
"""

from __future__ import annotations

from typing import Any

from landing.request_body import FORM_TYPE
from landing.vendors import REGISTRY
from landing.vendors.apple_health import USER_ID_RE


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.0 document for every route the receiver serves."""
    user_id = {"type": "string", "pattern": USER_ID_RE.pattern}
    any_json = {"oneOf": [{"type": "object"}, {"type": "array"}]}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Biobridge receiver", "version": "1"},
        "paths": {
            "/webhooks/{vendor}": {
                "post": {
                    "summary": "Land one webhook body; 202 only once it is durably stored.",
                    "parameters": [
                        {
                            "name": "vendor",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": sorted(REGISTRY)},
                        },
                        {"name": "user_id", "in": "query", "required": False, "schema": user_id},
                        {"name": "X-User-Id", "in": "header", "required": False, "schema": user_id},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": any_json},
                            FORM_TYPE: {"schema": {"type": "object"}},
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Stored.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Accepted"}
                                }
                            },
                        },
                        "200": {"description": "A handshake POST (Polar's PING): nothing lands."},
                        "400": _error("Empty or malformed body, or a malformed user id."),
                        "401": _error("Bad, missing or stale signature or token (docs/vendors)."),
                        "403": _error("A user token used for another user."),
                        "404": _error("Unknown vendor; Fitbit: bad signature, as Fitbit expects."),
                        "408": _error("The body did not arrive in time."),
                        "413": _error("The body is too large."),
                        "415": _error("Unsupported Content-Type or Content-Encoding."),
                        "503": _error("The store did not confirm the write: retry later."),
                    },
                },
                "get": {
                    "summary": "A vendor's subscription handshake (Oura challenge, Fitbit verify).",
                    "parameters": [
                        {
                            "name": "vendor",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["oura", "fitbit"]},
                        },
                        {"name": "verification_token", "in": "query", "schema": {"type": "string"}},
                        {"name": "challenge", "in": "query", "schema": {"type": "string"}},
                        {"name": "verify", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": 'Oura: {"challenge": C} for the right token.'},
                        "204": {"description": "Fitbit: the right verification code."},
                        "401": _error("Oura: wrong or unconfigured verification token."),
                        "404": _error("Fitbit: wrong or unconfigured verification code."),
                        "405": _error("Not a handshake: webhooks are POSTed."),
                    },
                },
            },
            "/healthz": {"get": {"responses": {"200": {"description": "The process is up."}}}},
            "/metrics": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "Prometheus text: webhook requests by vendor and "
                            "status, landing latency (this process)."
                        }
                    }
                }
            },
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "The store accepted a probe write and read."},
                        "503": {"description": "The store probe failed; the reason says why."},
                    }
                }
            },
        },
        "components": {
            "schemas": {
                "Accepted": {
                    "type": "object",
                    "required": [
                        "status",
                        "device_type",
                        "delivery_id",
                        "object_key",
                        "received_at",
                    ],
                    "properties": {
                        "status": {"type": "string", "enum": ["accepted"]},
                        "device_type": {"type": "string"},
                        "delivery_id": {"type": "string"},
                        "object_key": {"type": "string"},
                        "received_at": {"type": "string", "format": "date-time"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["status", "error", "detail"],
                    "properties": {
                        "status": {"type": "string"},
                        "error": {"type": "string"},
                        "detail": {"type": "string"},
                    },
                },
            }
        },
    }
