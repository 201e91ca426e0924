"""Test helpers: a fake OpenAI-compatible server so LLM-driven agents run offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenomy.testing.fake_openai import FAULT_MODES, FakeOpenAIServer

__all__ = ["FAULT_MODES", "FakeOpenAIServer"]


def __getattr__(name: str) -> Any:
    """Import lazily, so ``python -m tokenomy.testing.fake_openai`` runs without runpy's double-import warning."""
    if name in __all__:
        from tokenomy.testing import fake_openai

        return getattr(fake_openai, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
