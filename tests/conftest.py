"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import SecretStr
from transformers import AutoTokenizer, BertConfig, BertModel

from pgkd.data import Example
from pgkd.model_files import default_base_model

TOPICS = {
    "sport": ["match", "goal", "league", "coach", "striker", "tennis", "cup", "season"],
    "business": ["shares", "profit", "market", "bank", "economy", "prices", "investors", "deal"],
    "tech": ["software", "phone", "internet", "chip", "computer", "app", "robot", "online"],
}


def topic_examples(n_per_class: int, seed: int = 0) -> list[Example]:
    """Short synthetic texts whose label is carried by topic words: learnable in seconds."""
    rng = random.Random(seed)
    out = []
    for label, words in TOPICS.items():
        for i in range(n_per_class):
            picked = rng.sample(words, 3)
            out.append(Example(f"the {picked[0]} and the {picked[1]} news {i} about {picked[2]}", label))
    rng.shuffle(out)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer: trains in seconds."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # torch seeds itself at random per process: pin the weights, or tests flake
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def settings_env(settings: Any) -> dict[str, str]:
    """``settings`` as ``PGKD_*`` environment variables: how an operator configures `pgkd up`
    (the stack itself hands its services a settings file)."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        env[f"PGKD_{name.upper()}"] = str(value)
    return env
