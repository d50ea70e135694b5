"""Tool use: a call that ends in a tool call, then the follow-up turn with the tool's result.

An agent's answer takes two calls: the first ends with ``stop_reason: tool_use``; the second
sends the tool's result and gets the answer. They are two rows, ``ToolUse`` and
``ToolUseFollowUp``: the user waits for both. The harness keeps timings, not replies, so the
follow-up replays a fixed tool call (``get_weather`` for Paris) with its own id. Run alone:
``locust -f scenarios/tool_use.py --headless -u 2 -t 1m``.
"""

from typing import Any

from locust import task

from harness import AnthropicUser
from harness.request import user_message

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
        "required": ["city"],
    },
}
QUESTION = "What is the weather in Paris right now? Use the get_weather tool."
TOOL_CALL = {"type": "tool_use", "id": "toolu_harness_weather_1", "name": "get_weather", "input": {"city": "Paris"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": TOOL_CALL["id"], "content": "14 °C, light rain, wind 20 km/h"}


def round_trip(user: AnthropicUser, name: str, **options: Any) -> None:
    """The tool call, and the follow-up with its result when the model did call the tool."""
    first = user.messages(QUESTION, tools=[WEATHER_TOOL], name=name, **options)
    if first.stop_reason == "tool_use":
        history = [user_message(QUESTION), {"role": "assistant", "content": [TOOL_CALL]}]
        history.append({"role": "user", "content": [TOOL_RESULT]})
        user.messages(messages=history, tools=[WEATHER_TOOL], name=f"{name}FollowUp", **options)


class ToolUse(AnthropicUser):
    """A weather question answered with a tool call, then the follow-up turn with its result."""

    model = "claude-haiku-4-5"
    max_tokens = 300
    tags = ("tools",)

    @task
    def ask_with_tool(self) -> None:
        round_trip(self, self.name())
