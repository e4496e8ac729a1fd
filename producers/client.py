"""Publish one request and wait for its prediction: a smoke test of a running system.

>>> classify(settings, "Shares of Acme rose 5% after its results")      # doctest: +SKIP
Prediction(id='cli-...', label='business', confidence=0.97, model_version='v0003', ...)
"""

from __future__ import annotations

import time
import uuid

from streams import connect
from streams.events import EventDecodeError, Prediction, Request, decode
from streams.settings import StreamSettings
from streams.topics import Topics


def classify(settings: StreamSettings, text: str, *, timeout: float = 60.0) -> Prediction:
    """Send ``text`` to ``requests`` and return the first prediction for it. Raises TimeoutError."""
    topics = Topics(settings.namespace)
    consumer = connect.consumer(settings, group=None)
    producer = connect.producer(settings)
    try:
        # "the end" is resolved now, before the request can be answered
        connect.assign_all(consumer, topics.predictions, from_beginning=False)
        request = Request(id=f"cli-{uuid.uuid4().hex[:12]}", text=text, meta={"source": "cli"})
        producer.send(topics.requests, key=request.id.encode(), value=request.to_bytes())
        producer.flush(timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        prediction = decode(Prediction, record.value)
                    except EventDecodeError:
                        continue
                    if prediction.id == request.id:
                        return prediction
        raise TimeoutError(f"no prediction for {request.id} within {timeout:g} s: is `pgkd serve` running?")
    finally:
        consumer.close()
        producer.close()
