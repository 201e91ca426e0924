"""Test helpers: a fake OpenAI-compatible server so LLM-driven agents run offline."""

from tokenomy.testing.fake_openai import FAULT_MODES, FakeOpenAIServer

__all__ = ["FAULT_MODES", "FakeOpenAIServer"]
