"""Fixtures of the machine's RabbitMQ and Redis, shared by the sinks' suites.

tests/integration/conftest.py offers them to every integration suite: one names ``channel``,
``exchange``, ``client`` or ``stream`` as a parameter, unless it defines its own of that name;
each fails, or skips, as ``require`` says when its broker is not running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import aio_pika.abc
import pytest
import redis.asyncio

from tests.integration.brokers import RABBITMQ, REDIS, require, unique

AMQP_URL = f"amqp://guest:guest@127.0.0.1:{RABBITMQ}/"
REDIS_URL = f"redis://127.0.0.1:{REDIS}/0"


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the local RabbitMQ, closed with its connection afterwards."""
    require("RabbitMQ", RABBITMQ)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


@pytest.fixture
async def exchange(channel: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    """A name no exchange has yet; whatever is declared under it is deleted afterwards."""
    name = unique("poller-test")
    yield name
    await channel.exchange_delete(name)


async def queue_for(
    channel: aio_pika.abc.AbstractChannel, exchange: str, *keys: str
) -> aio_pika.abc.AbstractQueue:
    """An exclusive queue bound to ``exchange`` (a topic one) with each of ``keys``."""
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    for key in keys:
        await queue.bind(declared, key)
    return queue


@pytest.fixture
async def client() -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the local Redis, closed afterwards."""
    require("Redis", REDIS)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stream(client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key nobody else uses, deleted afterwards."""
    key = unique("poller-test")
    yield key
    await client.delete(key)
