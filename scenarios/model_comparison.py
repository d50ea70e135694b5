"""Model comparison: the same prompt to Haiku, Sonnet and Opus (one generation: 5.5).

The lever is the model: bigger models think better and answer slower. Compare the classes'
TTFT, completion time and output tokens/s rows. Run alone (one user per model):
``locust -f scenarios/model_comparison.py --headless -u 3 -t 1m``.
"""

from harness import AnthropicUser

PROMPT = "Explain in one paragraph how a hash map handles collisions."


class _SamePrompt(AnthropicUser):
    abstract = True
    max_tokens = 300
    prompt = PROMPT
    tags = ("models",)


class CompareHaiku(_SamePrompt):
    """The shared prompt to Claude Haiku 5.5: the fastest model."""

    model = "claude-haiku-5-5"


class CompareSonnet(_SamePrompt):
    """The shared prompt to Claude Sonnet 5.5: the balanced model."""

    model = "claude-sonnet-5-5"


class CompareOpus(_SamePrompt):
    """The shared prompt to Claude Opus 5.5: the most capable, slowest model."""

    model = "claude-opus-5-5"
