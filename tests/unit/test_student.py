import json

import numpy as np
import pytest
import torch

from pgkd.calibration import calibrate
from pgkd.errors import ModelError
from pgkd.features import FeatureCache
from pgkd.serving import inference_copy
from pgkd.student import Student
from pgkd.training import TrainConfig
from tests.conftest import TOPICS, topic_examples

LABELS = sorted(TOPICS)


@pytest.fixture()
def data():
    examples = topic_examples(40)
    return examples[:90], examples[90:]


def test_train_config_validates_itself():
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    assert TrainConfig().mode == "full", "the default student must fine-tune, not freeze the encoder"
    assert TrainConfig(mode="full").epochs == 20 and TrainConfig(mode="head").epochs == 200
    assert TrainConfig().batch == 16 and TrainConfig().warmup == 0.1 and TrainConfig(mode="head").warmup == 0
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.0)
    with pytest.raises(ValueError, match="class_weight"):
        TrainConfig(class_weight="inverse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")  # type: ignore[arg-type]


def test_create_rejects_bad_labels(tiny_encoder):
    with pytest.raises(ModelError, match=r"a student needs at least 2 distinct labels, got \['only'\]"):
        Student.create(["only"], tiny_encoder)
    with pytest.raises(ModelError, match=r"a student needs at least 2 distinct labels, got \['a', 'a'\]"):
        Student.create(["a", "a"], tiny_encoder)


def test_predict_shapes_and_probabilities(tiny_encoder):
    s = Student.create(LABELS, tiny_encoder)
    p = s.predict(["one text", "another, longer text about the market"])
    assert len(p.labels) == 2 and set(p.labels) <= set(LABELS)
    assert p.probs.shape == (2, 3)
    assert np.allclose(p.probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(p.confidence, p.probs.max(axis=1))
    assert s.predict([]).probs.shape == (0, 3)


@pytest.mark.parametrize("mode", ["head", "full"])
def test_fit_learns_and_keeps_best_epoch(tiny_encoder, data, mode):
    train, val = data
    s = Student.create(LABELS, tiny_encoder, seed=1).successor(mode, seed=1)
    assert s.pooling == ("native" if mode == "full" else "mean")
    before = np.mean(
        [a == e.label for a, e in zip(s.predict([e.text for e in val]).labels, val, strict=False)]
    )
    cfg = TrainConfig(
        mode=mode, max_epochs=60 if mode == "head" else 8, learning_rate=5e-2 if mode == "head" else 3e-3
    )
    result = s.fit(train, val, cfg)
    after = np.mean(
        [a == e.label for a, e in zip(s.predict([e.text for e in val]).labels, val, strict=False)]
    )
    assert after >= 0.8 and after > before
    assert 1 <= result.best_epoch <= result.epochs
    # the kept epoch is the last to improve by more than 1e-4, so within 1e-4 of the minimum
    lowest = min(h["val_loss"] for h in result.history)
    assert lowest <= result.best_validation_loss <= lowest + 1e-4
    assert result.history[result.best_epoch - 1]["val_loss"] == result.best_validation_loss
    assert s.metadata.train["mode"] == mode


def test_head_mode_leaves_encoder_untouched(tiny_encoder, data):
    s = Student.create(LABELS, tiny_encoder)
    encoder_before = {k: v.clone() for k, v in s.model.base_model.state_dict().items()}
    s.fit(*data, TrainConfig(mode="head", max_epochs=5))
    for k, v in s.model.base_model.state_dict().items():
        assert (v == encoder_before[k]).all(), k


def test_fit_rejects_unknown_labels(tiny_encoder, data):
    from pgkd.data import Example

    s = Student.create(LABELS, tiny_encoder)
    with pytest.raises(ModelError, match="taxonomy"):
        s.fit([Example("x", "weather")], data[1])


def test_save_load_roundtrip_and_checksum(tiny_encoder, data, tmp_path):
    s = Student.create(LABELS, tiny_encoder)
    s.fit(*data, TrainConfig(mode="head", max_epochs=5))
    s.metadata.version = "v7"
    s.metadata.parent_version = "v6"
    out = s.save(tmp_path / "m")
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin")), "weights must be safetensors only"
    meta = json.loads((out / "pgkd.json").read_text())
    assert meta["labels"] == LABELS and meta["version"] == "v7" and len(meta["weights_sha256"]) == 64
    loaded = Student.load(out)
    texts = [e.text for e in data[1]]
    assert np.allclose(loaded.predict(texts).probs, s.predict(texts).probs, atol=1e-6)
    assert loaded.metadata.parent_version == "v6"
    # a flipped byte in the weights is refused
    weights = out / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="checksum"):
        Student.load(out)


def test_load_refuses_directories_without_safetensors(tmp_path):
    (tmp_path / "pgkd.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="safetensors"):
        Student.load(tmp_path)
    with pytest.raises(ModelError, match="pgkd.json"):
        Student.load(tmp_path / "missing")


def test_clone_is_independent_and_reset_head_changes_weights(tiny_encoder, data):
    s = Student.create(LABELS, tiny_encoder)
    twin = s.clone()
    twin.fit(*data, TrainConfig(mode="head", max_epochs=5))
    assert not np.allclose(s.model.classifier.weight.detach(), twin.model.classifier.weight.detach())
    w = twin.model.classifier.weight.detach().clone()
    twin.reset_head(seed=5)
    assert not np.allclose(w, twin.model.classifier.weight.detach())


def test_embed_is_normalised_and_cache_is_consistent(tiny_encoder):
    s = Student.create(LABELS, tiny_encoder)
    texts = ["a short text", "a much longer text about the bank and the economy today"]
    e1 = s.embed(texts, cache=True)
    e2 = s.embed(list(reversed(texts)), cache=False)
    assert np.allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    assert np.allclose(e1, e2[::-1], atol=1e-5)


def test_int8_inference_copy_predicts_like_the_original_and_refuses_training(tiny_encoder, data, tmp_path):
    train, val = data
    s = Student.create(LABELS, tiny_encoder, seed=1)
    s.fit(train, val, TrainConfig(mode="head", max_epochs=60, learning_rate=5e-2))
    q = inference_copy(s, "int8")
    assert inference_copy(s, "eager") is s
    assert q is not s and q.inference == "int8" and s.inference == "eager"
    kinds = {type(m) for m in q.model.base_model.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds and torch.nn.Linear not in kinds
    assert type(q.model.classifier) is torch.nn.Linear  # the head stays float
    texts = [e.text for e in val]
    exact, fast = s.predict(texts), q.predict(texts)
    assert fast.probs.shape == exact.probs.shape
    assert np.allclose(fast.probs.sum(axis=1), 1.0, atol=1e-5)
    agreement = np.mean([a == b for a, b in zip(exact.labels, fast.labels, strict=True)])
    assert agreement >= 0.9
    # The original is untouched: its encoder still holds float weights and predicts as before.
    assert np.allclose(s.predict(texts).probs, exact.probs)
    with pytest.raises(ModelError, match="int8"):
        q.fit(train, val)
    with pytest.raises(ModelError, match="int8"):
        q.save(tmp_path / "q")
    with pytest.raises(ModelError, match="inference mode"):
        inference_copy(s, "fp4")  # type: ignore[arg-type]


def test_head_mode_refuses_a_natively_scored_student(tiny_encoder, data):
    s = Student.create(LABELS, tiny_encoder).successor("full")
    with pytest.raises(ModelError, match="successor"):
        s.fit(*data, TrainConfig(mode="head", max_epochs=1))


def test_successors_start_from_the_base_weights_with_a_fresh_head(tiny_encoder, data):
    base = Student.create(LABELS, tiny_encoder, seed=0)
    full = base.successor("full", seed=3)
    full.fit(*data, TrainConfig(max_epochs=2, learning_rate=3e-3))
    again = base.successor("full", seed=3)
    # the base encoder is untouched by a successor's fine-tuning, and a new successor starts there
    for (name, w), (_, w0) in zip(
        again.model.base_model.state_dict().items(), base.model.base_model.state_dict().items(), strict=True
    ):
        assert torch.equal(w, w0), name
    assert not torch.equal(full.model.classifier.weight, again.model.classifier.weight)
    head = base.successor("head")
    assert head.feature_cache is base.feature_cache  # frozen encoder: the cache is shared
    assert full.feature_cache is not base.feature_cache


def test_rare_class_weighting_lifts_its_share_of_predictions(tiny_encoder):
    examples = topic_examples(40, seed=3)
    rare = [e for e in examples if e.label == "tech"][:3]
    train = [e for e in examples if e.label != "tech"][:60] + rare
    val = topic_examples(20, seed=4)
    probe = [e.text for e in topic_examples(30, seed=5) if e.label == "tech"]

    def tech_mass(rule):
        s = Student.create(LABELS, tiny_encoder, seed=0).successor("head")
        s.fit(train, val, TrainConfig(mode="head", max_epochs=40, learning_rate=5e-2, class_weight=rule))
        return float(s.predict(probe).probs[:, LABELS.index("tech")].mean())

    assert tech_mass("balanced") > tech_mass("none")


def test_native_student_loads_in_transformers_with_the_same_answers(tiny_encoder, data, tmp_path):
    from transformers import pipeline

    s = Student.create(LABELS, tiny_encoder, seed=1).successor("full", seed=1)
    s.fit(*data, TrainConfig(max_epochs=6, learning_rate=3e-3))
    s.metadata.metrics = {"test": {"accuracy": 0.91, "macro_f1": 0.9}, "teacher": "simulated"}
    fitted = calibrate(s, data[1])  # folded into the weights: transformers must see it too
    assert fitted.temperature != 1.0
    out = s.save(tmp_path / "m")
    texts = [e.text for e in data[1]]
    ours = s.predict(texts)
    classify = pipeline("text-classification", model=str(out), tokenizer=str(out), top_k=None, device="cpu")
    theirs = classify(texts, truncation=True, max_length=s.metadata.max_length)
    for text_scores, probs in zip(theirs, ours.probs, strict=True):
        by_label = {d["label"]: d["score"] for d in text_scores}
        assert np.allclose([by_label[c] for c in LABELS], probs, atol=1e-5)
    # no path of the training machine in what is shipped
    for name in ("pgkd.json", "config.json", "tokenizer_config.json"):
        assert str(tiny_encoder) not in (out / name).read_text() and "/tmp" not in (out / name).read_text()
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "0.9100" in card and "simulated" in card
    assert f"T = {fitted.temperature:.3f}" in card


def test_a_head_mode_student_is_refused_by_transformers_and_loads_in_pgkd(tiny_encoder, data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    s = Student.create(LABELS, tiny_encoder).successor("head")
    s.fit(*data, TrainConfig(mode="head", max_epochs=5))
    out = s.save(tmp_path / "m")
    with pytest.raises(ValueError, match="pgkd"):
        AutoModelForSequenceClassification.from_pretrained(out)
    texts = [e.text for e in data[1]]
    assert np.allclose(Student.load(out).predict(texts).probs, s.predict(texts).probs, atol=1e-6)
    assert "pgkd.Student.load" in (out / "README.md").read_text()


def test_the_feature_memo_is_bounded_and_keeps_the_latest_texts(tiny_encoder):
    s = Student.create(LABELS, tiny_encoder).successor("head")
    s.feature_cache = FeatureCache(5)
    texts = [f"text number {i} about the markets" for i in range(20)]
    first = s.encode(texts, cache=True)
    assert len(s.feature_cache) == 5 and all(t in s.feature_cache for t in texts[-5:])
    again = s.encode(texts, cache=True)  # evicted ones are computed again, and the same
    assert torch.allclose(first, again, atol=1e-6)
