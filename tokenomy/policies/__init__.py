"""Where decisions come from: the rules (in each role's module) or an LLM (``llm``)."""
