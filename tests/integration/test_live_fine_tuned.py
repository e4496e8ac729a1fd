"""The default live trainer fine-tunes the encoder: a promoted fine-tuned model reaches serving.

Real broker, real Redis, real service processes; the samples come from gold-labelled traffic sent
to ``samples`` (the source a feedback join would give them), so no teacher is involved.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pgkd.runner import load_splits
from pgkd.student import Student
from producers.replay import Replayer, ReplayReport
from streams import connect
from streams.events import Sample
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings

pytestmark = pytest.mark.slow


def test_the_trainer_promotes_a_fine_tuned_model_and_serving_hot_swaps_to_it(
    broker, redis_url, namespace, tmp_path, kafka
):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        mode="full",  # the default of every service; live_settings pins the fast head mode
        max_length=32,
        n_train=40,
        retrain_every_samples=150,
        retrain_every_seconds=600,
    )
    topics = Topics(namespace)
    with EmbeddedStack(settings, tmp_path / "stack", services=("trainer", "serving")) as stack:
        stack.wait_healthy(timeout=600)
        registry = connect.registry(stack.settings)
        first = registry.current()
        assert first.version == "v0001"
        splits = load_splits(settings)
        predictions = kafka.reader(stack.settings, topics.predictions)
        producer = kafka.producer(stack.settings)
        held_out = {e.text for e in (*splits.validation, *splits.test)}  # the trainer refuses these
        fresh = [e for e in splits.traffic if e.text not in held_out]
        for e in fresh[:150]:
            sample = Sample.of(e.text, e.label, "feedback")
            producer.send(topics.samples, key=sample.key.encode(), value=sample.to_bytes())
        producer.flush()

        stop, report = threading.Event(), ReplayReport()
        replayer = Replayer(
            kafka.producer(stack.settings), topics, rate=5, feedback_fraction=0.0, id_prefix="ft"
        )
        thread = threading.Thread(
            target=replayer.run, args=(fresh[150:],), kwargs={"stop": stop, "report": report}
        )
        thread.start()
        try:
            predictions.until(
                lambda rs: any(p.model_version == "v0002" for ps in answered(rs).values() for p in ps),
                timeout=900,
                what="a prediction from the fine-tuned v0002",
            )
        finally:
            stop.set()
            thread.join(timeout=60)
        records = predictions.until(
            lambda rs: set(report.ids) <= set(answered(rs)), timeout=300, what="every request answered"
        )
        assert set(report.ids) <= set(answered(records)), "a request was lost across the swap"

        second = registry.current()
        assert second.version == "v0002" and second.parent_version == "v0001"
        assert second.metric("macro_f1") >= first.metric("macro_f1")
        model = registry.load("v0002")
        assert model.pooling == "native" and model.metadata.train["mode"] == "full"
        assert model.metadata.train["train_size"] == len(splits.train) + 150
        # The promoted version is an ordinary transformers classifier with pgkd's answers.
        folder = Path(second.uri)
        from transformers import pipeline

        texts = [e.text for e in splits.test[:8]]
        classify = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
        theirs = classify(texts, truncation=True, max_length=model.metadata.max_length)
        ours = Student.load(folder).predict(texts)
        for scores, probs in zip(theirs, ours.probs, strict=True):
            by_label = {d["label"]: d["score"] for d in scores}
            assert np.allclose([by_label[c] for c in model.labels], probs, atol=1e-5)
