"""Wire types of the webhook endpoints (responses are built by converters in the model)."""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.webhooks.model import (
    CreateEndpointParams,
    DeletedEndpoint,
    DeliveryView,
    EndpointView,
    EndpointWithSecret,
    UpdateEndpointParams,
)


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[EndpointView]
    # An account has at most 16 endpoints: one page holds them all.
    has_more: bool = False


class DeliveryList(msgspec.Struct, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[DeliveryView]
    has_more: bool


__all__ = [
    "CreateEndpointParams",
    "DeletedEndpoint",
    "DeliveryList",
    "DeliveryView",
    "EndpointList",
    "EndpointView",
    "EndpointWithSecret",
    "UpdateEndpointParams",
]
