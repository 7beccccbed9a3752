"""Fixtures of the diffusers tests; the tiny models themselves are built in ``tiny_diffusers``."""

from __future__ import annotations

import importlib.util
import logging
import warnings

import pytest

# without diffusers (and transformers for the text encoder) there is nothing to test here
if importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("transformers") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, while on a small busy machine threads that wait for each
    other make these tests many times slower (measured: 5 s with one thread, minutes with two)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _quiet_hosts():
    """diffusers/transformers print deprecation notes and load reports for tiny test models; keep the output
    readable (assertions never rely on them)."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.fixture
def sd_pipe(tmp_path):
    from tiny_diffusers import make_pipeline

    (tmp_path / "tokenizer").mkdir()
    return make_pipeline(tmp_path / "tokenizer")
