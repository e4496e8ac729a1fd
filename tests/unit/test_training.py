"""The pieces of a training run: class weights, length-bucketed batches, schedule, device."""

import pytest
import torch

from pgkd.training import bucketed_batches, class_weights, resolve_device, warmup_then_decay


def test_class_weights_favour_rare_classes_and_average_one():
    labels = [0] * 16 + [1] * 4 + [2]
    balanced = class_weights(labels, 4, "balanced")
    sqrt = class_weights(labels, 4, "sqrt")
    assert class_weights(labels, 4, "none") is None
    assert balanced[0] < balanced[1] < balanced[2] and balanced[3] == 0  # absent class: no weight
    assert sqrt[2] / sqrt[0] == pytest.approx(4.0)  # sqrt(16 / 1)
    assert balanced[:3].mean().item() == pytest.approx(1.0)


def test_bucketed_batches_cover_every_example_once_with_little_padding():
    g = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in torch.randint(1, 200, (1000,), generator=g)]
    batches = bucketed_batches(lengths, 16, 10, torch.Generator().manual_seed(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert max(len(b) for b in batches) == 16
    # within a batch lengths are close: far less padding than random batches would need
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert waste < 0.2 * sum(lengths)
    # and the order differs from one epoch to the next
    assert bucketed_batches(lengths, 16, 10, torch.Generator().manual_seed(2)) != batches


def test_warmup_rises_then_decays_to_zero():
    f = warmup_then_decay(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0.0
    assert warmup_then_decay(10, 0.0)(0) == 1.0


def test_device_is_chosen_automatically_and_threads_fit_the_cpu_budget():
    import os

    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        assert torch.get_num_threads() <= len(os.sched_getaffinity(0))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")
