"""Typed access to records where confluent_kafka's type stubs are looser than what a client
hands us.

A record a consumer returns always has its partition and offset (the stubs say `int | None`:
a Message can also be made by hand), and its headers are a list of (name, bytes or None) (the
stubs also allow a dict and str values, which only a producer accepts). The headers we
produce are a list of (name, bytes), which the stubs' invariant list type does not take as
it stands.
"""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from msi_tui.engine import wire

ProducedHeaders = list[tuple[str, str | bytes | None]]


def partition_of(msg: Message) -> int:
    """The partition of a record read from a topic."""
    partition = msg.partition()
    if partition is None:
        raise ValueError("a record without a partition")
    return partition


def offset_of(msg: Message) -> int:
    """The offset of a record read from a topic (or, with a partition-EOF error, the end)."""
    offset = msg.offset()
    if offset is None:
        raise ValueError("a record without an offset")
    return offset


def headers_of(msg: Message) -> wire.ReadHeaders | None:
    """The headers of a record read from a topic: (name, value) pairs, a value bytes or None."""
    return cast("wire.ReadHeaders | None", msg.headers())


def produced(headers: wire.Headers) -> ProducedHeaders:
    """Our headers as Producer.produce takes them (the same list)."""
    return cast("ProducedHeaders", headers)


def timestamp_of(msg: Message) -> int:
    """A record's timestamp in ms (0 when it has none)."""
    return msg.timestamp()[1]
