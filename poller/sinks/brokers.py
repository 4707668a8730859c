"""Building a broker sink from its config; each client library is imported only when used.

The client libraries are optional extras (``pip install 'poller[nats]'`` and so on), so
the modules that import them are loaded here, on demand, not by the composition root.
"""

from __future__ import annotations

from poller import config as config_mod
from poller.sinks.base import Sink


def build(cfg: config_mod.BrokerSinkConfig) -> Sink:
    """The sink ``cfg`` describes (its extra is installed: the config check saw to that)."""
    name, url, fmt, timeout = cfg.name, cfg.url, cfg.format, cfg.timeout
    if isinstance(cfg, config_mod.NatsSinkConfig):
        from poller.sinks.nats import NatsSink

        return NatsSink(name, url, subject=cfg.subject, format=fmt, timeout=timeout)
    if isinstance(cfg, config_mod.AmqpSinkConfig):
        from poller.sinks.amqp import AmqpSink

        return AmqpSink(
            name,
            url,
            exchange=cfg.exchange,
            routing_key=cfg.routing_key,
            format=fmt,
            timeout=timeout,
        )
    if isinstance(cfg, config_mod.RedisSinkConfig):
        from poller.sinks.redis import RedisSink

        return RedisSink(
            name, url, stream=cfg.stream, maxlen=cfg.maxlen, format=fmt, timeout=timeout
        )
    from poller.sinks.mqtt import MqttSink

    return MqttSink(name, url, topic=cfg.topic, qos=cfg.qos, format=fmt, timeout=timeout)
