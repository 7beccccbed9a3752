"""Fixtures of the diffusers tests; the tiny models themselves are built in ``tiny_diffusers``."""

from __future__ import annotations

import logging
import warnings

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from tiny_diffusers import make_pipeline  # noqa: E402


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
    (tmp_path / "tokenizer").mkdir()
    return make_pipeline(tmp_path / "tokenizer")
