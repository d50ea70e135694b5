"""Dataset replay: send the requests of a JSONL file, in order, one per call.

Each line is a Messages API request body (``messages`` and any other field, such as
``system``, ``max_tokens`` or ``model``). Without ``--dataset`` the small sample in
``scenarios/data/sample.jsonl`` is replayed. Run alone:
``locust -f scenarios/dataset_replay.py --dataset my_requests.jsonl --headless -u 2 -t 1m``.
"""

from pathlib import Path

from harness import AnthropicUser
from harness.prompts import Dataset

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.jsonl"


class DatasetReplay(AnthropicUser):
    """The requests of --dataset FILE.jsonl (default: the shipped sample), replayed in order."""

    model = "claude-haiku-4-5"
    max_tokens = 256
    prompt_source = Dataset(SAMPLE)
    tags = ("dataset",)
