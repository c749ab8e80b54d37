"""Owns turning a JSON Schema document (the wire contract's request model) into CDK's ``apigw.JsonSchema``."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_apigateway as apigw

# JSON Schema keywords -> apigw.JsonSchema's arguments, for the keywords the wire contract's request schema uses.
_SCHEMA_KEYWORDS = {"$schema": "schema", "title": "title", "type": "type", "not": "not_", "anyOf": "any_of",
                    "oneOf": "one_of", "required": "required", "items": "items", "minItems": "min_items",
                    "maxItems": "max_items"}
_SCHEMA_VERSIONS = {"http://json-schema.org/draft-04/schema#": apigw.JsonSchemaVersion.DRAFT4}


def json_schema(document: dict[str, Any]) -> apigw.JsonSchema:
    """``document`` (a JSON Schema) as CDK's ``JsonSchema``; a keyword this does not know is a ValueError."""
    unknown = set(document) - set(_SCHEMA_KEYWORDS)
    if unknown:
        raise ValueError(f"JSON Schema keywords not mapped to apigw.JsonSchema: {sorted(unknown)}")
    args: dict[str, Any] = {}
    for keyword, value in document.items():
        if keyword == "$schema":
            if value not in _SCHEMA_VERSIONS:
                raise ValueError(f"JSON Schema version not mapped to apigw.JsonSchemaVersion: {value!r}")
            value = _SCHEMA_VERSIONS[value]
        elif keyword == "type":
            if not isinstance(value, str) or value.upper() not in apigw.JsonSchemaType.__members__:
                raise ValueError(f"JSON Schema type not mapped to apigw.JsonSchemaType: {value!r}")
            value = apigw.JsonSchemaType[value.upper()]
        elif keyword in ("not", "items"):
            value = json_schema(value)
        elif keyword in ("anyOf", "oneOf"):
            value = [json_schema(v) for v in value]
        args[_SCHEMA_KEYWORDS[keyword]] = value
    return apigw.JsonSchema(**args)
