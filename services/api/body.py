"""Request bodies decoded once, strictly, straight from the raw bytes.

Litestar decodes a `data` body to builtins and then converts them leniently ("14650" becomes
14650), and the contract's types are strict, so the routes used to decode the body a second
time with `decode_strict`: three passes per request. A DTO's `decode_bytes` receives the raw
body instead, so one strict msgspec decode does it all; the OpenAPI schema still comes from
the struct (Litestar's MsgspecDTO)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar.dto import MsgspecDTO
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference, Schema

from services.api.errors import decode_strict
from shared.errors import ValidationFailed

S = TypeVar("S", bound=msgspec.Struct)


def _decoder(model: type[S]) -> msgspec.json.Decoder[Any]:
    """msgspec decodes a lone tagged struct without its tag field, while the document (one
    schema per struct, shared with the unions that need the tag) marks it required. In a
    union the tag is required: a second member that no body names makes one."""
    config = model.__struct_config__
    if config.tag is None:
        return msgspec.json.Decoder(model)
    unmatched = msgspec.defstruct(
        f"No{model.__name__}", [], tag_field=config.tag_field, tag="\x00unmatched"
    )
    return msgspec.json.Decoder(model | unmatched)


def strict_body(model: type[S]) -> type[MsgspecDTO[S]]:
    """A DTO for `data: model` that decodes with `decode_strict` (errors name the field)."""
    decoder = _decoder(model)
    tag_field = model.__struct_config__.tag_field

    class StrictBody(MsgspecDTO[model]):  # type: ignore[valid-type]  # a runtime type argument
        def decode_bytes(self, value: bytes) -> Any:
            decoded = decode_strict(value, decoder)
            if not isinstance(decoded, model):  # the tag of the unmatched member, sent on purpose
                raise ValidationFailed(f"{tag_field}: Invalid value")
            return decoded

        @classmethod
        def create_openapi_schema(
            cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
        ) -> Reference | Schema:
            # The struct's own schema (the DTO's generated transfer model is an internal copy
            # whose optional constrained fields msgspec.inspect cannot translate).
            return schema_creator.for_field_definition(
                FieldDefinition.from_annotation(
                    model, kwarg_definition=field_definition.kwarg_definition
                )
            )

    StrictBody.__name__ = StrictBody.__qualname__ = f"Strict{model.__name__}Body"
    return StrictBody
