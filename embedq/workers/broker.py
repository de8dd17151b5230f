"""Celery's Redis transport, made to survive a lost connection: nothing of a closed channel
is restored or acknowledged.

When the connection to Redis is lost (Redis restarted or killed), kombu 5.7 closes the
channel and then still works on it: it puts the worker's unacknowledged messages back
on their queues, and a task that ends afterwards acknowledges its message. Both need a
client of the closed connection, raise ``AttributeError`` (``_connparams``), and the
worker stops for good, with exit status 0.

embedq needs neither. The ledger knows every batch that is not done, and a reaper
publishes again any batch whose message is gone (``jobs.publishing``). A message left
unacknowledged in Redis comes back by itself after the visibility timeout, as a
duplicate the claim turns away.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)

TRANSPORT = "embedq.workers.broker:Transport"


class Channel(kombu_redis.Channel):
    do_restore = False  # no restore on close: the reaper publishes what was lost

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        if self._lost():
            logger.info("message %s not acknowledged: its connection was lost", delivery_tag)
            return
        super().basic_ack(delivery_tag, multiple=multiple)  # type: ignore[no-untyped-call]

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._lost():
            logger.info("message %s not rejected: its connection was lost", delivery_tag)
            return
        super().basic_reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]

    def _lost(self) -> bool:
        transport = self.connection
        return bool(self.closed or self._closing or transport is None or transport.client is None)


class Transport(kombu_redis.Transport):
    Channel = Channel
