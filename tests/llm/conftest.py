"""Fixtures of the LLM tests: a fake OpenAI-compatible server per test, and a recognisable fake key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llm_helpers import KEY

from tokenomy.testing.fake_openai import FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model", retry_after_ms=1) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes inherit it: the key is never pickled
