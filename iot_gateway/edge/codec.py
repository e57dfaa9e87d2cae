"""The codec for a connection's protocol level (see ``wire`` for framing and errors)."""

from __future__ import annotations

from iot_gateway.edge.v5 import V5Codec
from iot_gateway.edge.v311 import V311Codec
from iot_gateway.edge.wire import Codec, UnsupportedProtocol


def codec_for(version: int) -> Codec:
    """The codec for a protocol level from `connect_version`."""
    if version == 5:
        return V5Codec()
    if version in (3, 4):
        return V311Codec(version)
    raise UnsupportedProtocol(f"protocol level {version} is not supported")
