"""Watching a run while it goes: generator health, spend, rate limits and the live figures."""
