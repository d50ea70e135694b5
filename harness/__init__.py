"""LLM load-testing harness for Anthropic-compatible Messages APIs, built on Locust."""
