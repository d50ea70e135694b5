"""The A/A control of a lever study: one request under two names.

``ControlA`` and ``ControlB`` send the very same request, so any difference between them is
chance (or drift the schedule failed to spread). In a study (``--levers``) their interval is
the noise floor every lever's effect must clear, and over many seeds the 95% interval holds
0 about 95% of the time: the honesty check of the statistics. Run alone:
``locust -f scenarios/levers.py --headless -u 2 -t 1m``.
"""

from harness import AnthropicUser

PROMPT = "In two sentences, why does streaming make a chat interface feel faster?"


class _Control(AnthropicUser):
    abstract = True
    model = "claude-haiku-4-5"
    max_tokens = 256
    prompt = PROMPT
    tags = ("control",)


class ControlA(_Control):
    """The control request, first name: ShortChat's request, for the A/A check."""


class ControlB(_Control):
    """The same request as ControlA under a second name: any difference between them is chance."""
