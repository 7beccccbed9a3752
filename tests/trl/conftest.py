"""Fixtures for the TRL tests: a tokenizer built in code, a tiny Llama saved on disk and small datasets."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl_helpers import make_tiny_llama, make_tokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the threads' spinning slows every
    step down by an order of magnitude."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer() -> transformers.PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture
def base_dir(tmp_path, tokenizer) -> str:
    """A tiny Llama saved on disk, so adapters record it as ``base_model_name_or_path`` and reload from it."""
    path = tmp_path / "base"
    make_tiny_llama(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def text_dataset() -> datasets.Dataset:
    texts = [
        "the cat sat on the mat",
        "the dog ran to the park",
        "hello world is good",
        "what color is the sky blue",
        "the sun is big the moon is small",
        "a dog is good a cat is good",
        "day night",
        "the red mat is bad",
    ]
    return datasets.Dataset.from_dict({"text": texts})


@pytest.fixture
def preference_dataset() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "prompt": ["what color is the sky", "is the cat good", "is the sun big", "what color is the mat"],
            "chosen": [" blue", " yes the cat is good", " yes", " red"],
            "rejected": [" green the sky is green", " no", " no the sun is small", " blue"],
        }
    )
