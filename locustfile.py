"""Top-level locustfile: every scenario of the library, ShortChat unless you pick others.

locust -f locustfile.py --headless -u 10 -r 10 -t 30s     # ShortChat, against the simulator unless told otherwise
locust -f locustfile.py --list                            # every scenario, its description and tags
locust -f locustfile.py CacheWarm CacheCold ...           # scenarios by class name
locust -f locustfile.py --tags thinking ...               # scenarios by tag
locust -f locustfile.py                                   # web UI on http://localhost:8089

Locust runs every User class of a locustfile when none is named; run_by_default() keeps the
default run to ShortChat while the rest of the library stays selectable by name or tag.
"""

from harness.catalog import run_by_default
from scenarios.chat import ShortChat
from scenarios.dataset_replay import DatasetReplay
from scenarios.extended_thinking import NoThinking, Thinking1k, Thinking2k, Thinking4k
from scenarios.levers import ControlA, ControlB
from scenarios.mixed import ProductionMix
from scenarios.model_comparison import CompareHaiku, CompareOpus, CompareSonnet
from scenarios.multi_turn import MultiTurnChat
from scenarios.output_length import MaxTokens64, MaxTokens256, MaxTokens1024, OneSentence, OpenQuestion
from scenarios.prompt_caching import CacheCold, CacheWarm
from scenarios.prompt_length import LongContext, ShortPrompt
from scenarios.streaming import NonStreamed, Streamed
from scenarios.tool_use import ToolUse

run_by_default(ShortChat)

__all__ = [
    "CacheCold",
    "CacheWarm",
    "CompareHaiku",
    "CompareOpus",
    "CompareSonnet",
    "ControlA",
    "ControlB",
    "DatasetReplay",
    "LongContext",
    "MaxTokens64",
    "MaxTokens256",
    "MaxTokens1024",
    "MultiTurnChat",
    "NoThinking",
    "NonStreamed",
    "OneSentence",
    "OpenQuestion",
    "ProductionMix",
    "ShortChat",
    "ShortPrompt",
    "Streamed",
    "Thinking1k",
    "Thinking2k",
    "Thinking4k",
    "ToolUse",
]
