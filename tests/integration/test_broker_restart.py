"""The broker goes away and comes back: the services reconnect by themselves, without a restart.

The embedded broker (tansu) keeps everything in memory, so the broker that comes back is empty:
topics, records and committed offsets are gone. The trainer recreates the topics and announces the
current model again (its reconcile step); serving keeps its loaded model and answers the requests
sent after the restart. With a real Kafka cluster the log and the offsets survive a broker restart
and nothing of this is lost.
"""

from __future__ import annotations

import time

import pytest

from pgkd.runner import load_splits
from producers.replay import Replayer
from streams import connect
from streams.children import start_broker
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings
from tests.integration.test_redis_outage import wait_until

pytestmark = pytest.mark.slow


def topic_exists(settings, topic: str) -> bool:
    consumer = connect.consumer(settings, group=None)
    try:
        return topic in consumer.topics()
    finally:
        consumer.close()


def test_services_reconnect_to_a_restarted_broker(redis_url, namespace, tmp_path, kafka):
    log = tmp_path / "broker.log"
    broker, address = start_broker(log)
    port = int(address.rsplit(":", 1)[1])
    settings = live_settings(address, redis_url, namespace, tmp_path, retrain_every_samples=1000)
    topics = Topics(namespace)
    try:
        with EmbeddedStack(settings, tmp_path / "stack", services=("trainer", "serving")) as stack:
            stack.wait_healthy(timeout=300)
            traffic = list(load_splits(settings).traffic)
            before = Replayer(
                kafka.producer(stack.settings), topics, feedback_fraction=0.0, id_prefix="before"
            ).run(traffic[:50])
            reader = kafka.reader(stack.settings, topics.predictions)
            reader.until(lambda rs: set(before.ids) <= set(answered(rs)), 120, "answers before the restart")
            reader.close()
            version = {p.model_version for ps in answered(reader.records).values() for p in ps}

            broker.stop(grace=2)
            time.sleep(10)  # long enough for every client to notice
            broker, _ = start_broker(log, port=port)
            # The trainer recreates the topics (empty broker) and re-announces its model.
            wait_until(lambda: topic_exists(stack.settings, topics.predictions), 120, "recreated topics")
            after = Replayer(
                kafka.producer(stack.settings), topics, feedback_fraction=0.0, id_prefix="after"
            ).run(traffic[50:100])
            reader = kafka.reader(stack.settings, topics.predictions)
            records = reader.until(
                lambda rs: set(after.ids) <= set(answered(rs)), 300, "answers after the restart"
            )
            assert {p.model_version for ps in answered(records).values() for p in ps} == version
            assert all(child.alive for child in stack.services.values()), "a service died"
            stack.wait_healthy(timeout=120)
    finally:
        broker.stop(grace=2)


def test_an_auto_created_model_updates_topic_is_replaced_only_while_empty(broker, namespace, tmp_path, kafka):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    settings = live_settings(broker, "redis://unused", namespace, tmp_path)
    topics = Topics(namespace)
    admin = KafkaAdminClient(**connect.kafka_options(settings))
    try:
        # What a broker that creates topics on a fetch leaves behind: its default partition count.
        admin.create_topics([NewTopic(topics.model_updates, 4, 1)])
        connect.ensure_topics(settings)
        assert len(admin.describe_topics([topics.model_updates])[0]["partitions"]) == 1

        other = live_settings(broker, "redis://unused", namespace + "x", tmp_path)
        updates = Topics(namespace + "x").model_updates
        admin.create_topics([NewTopic(updates, 4, 1)])
        connect.send_and_confirm(kafka.producer(other), updates, b"v0001", b"{}")
        with pytest.raises(RuntimeError, match="records"):  # never delete what someone wrote
            connect.ensure_topics(other)
        assert len(admin.describe_topics([updates])[0]["partitions"]) == 4
    finally:
        admin.close()
