"""``AnthropicUser``: the Locust user class every scenario subclasses.

A scenario is configured with class attributes, the way Locust configures users::

    class HaikuChat(AnthropicUser):
        model = "claude-haiku-4-5"
        max_tokens = 256
        prompt = "Name three prime numbers."

The inherited task makes one measured call per iteration; a scenario with its own
``@task`` methods calls :meth:`AnthropicUser.messages` as often as it likes.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from locust import User, task

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.prompts import PromptSource
from harness.core.request import MessageRequest, user_message
from harness.runtime.catalog import tag_tasks
from harness.runtime.retries import call_with_retries
from harness.runtime.state import Harness, harness_of

__all__ = ["AnthropicUser"]

_UNSET: Any = object()
_user_ids = itertools.count(1)


class AnthropicUser(User):
    """An abstract Locust user that calls the Messages API and measures every call.

    Class attributes (override them in a scenario):

    * ``model`` — required, e.g. ``"claude-haiku-4-5"``.
    * ``max_tokens`` — the output cap sent with every call.
    * ``prompt`` — the text of a single user turn; or ``conversation``, a full
      ``messages`` list (``[{"role": "user", "content": ...}, ...]``).
    * ``system``, ``temperature`` — sent when set.
    * ``stream`` — ``True`` measures TTFT and completion time; ``False`` measures
      completion time only (the latency guide's baseline latency).
    * ``params`` — any other request field (``tools``, ``thinking``, ``stop_sequences``…).
    * ``prompt_source`` — where each call's request comes from instead of ``prompt``: a
      :mod:`harness.core.prompts` source (``Text``, ``Template``, ``Dataset``, ``Synthetic``).
    * ``scenario_name`` — the name in Locust's stats; the class name by default.
    * ``tags`` — tags for every task of the class, so ``--tags`` selects the scenario.
    * ``weight`` / ``fixed_count`` — Locust's own: the share of users this class gets.

    The class's docstring's first line is its description in ``locust --list``.
    """

    abstract = True

    model: ClassVar[str] = ""
    max_tokens: ClassVar[int] = 1024
    prompt: ClassVar[str | None] = None
    conversation: ClassVar[Sequence[Mapping[str, Any]] | None] = None
    system: ClassVar[str | Sequence[Mapping[str, Any]] | None] = None
    temperature: ClassVar[float | None] = None
    stream: ClassVar[bool] = True
    params: ClassVar[Mapping[str, Any]] = {}
    prompt_source: ClassVar[PromptSource | None] = None
    scenario_name: ClassVar[str | None] = None
    tags: ClassVar[Sequence[str]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Locust hands a subclass its base classes' tasks too; the default call is only
        # for scenarios that define no task of their own. (``tags`` wrap tasks: unwrap to compare.)
        own = [t for t in cls.tasks if getattr(t, "__wrapped__", t) is not AnthropicUser.call_once]
        if own:
            cls.tasks = own
        tag_tasks(cls)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.user_id = next(_user_ids)

    @property
    def harness(self) -> Harness:
        return harness_of(self.environment)

    @classmethod
    def name(cls) -> str:
        """The scenario's name in Locust's stats and the harness's records."""
        return cls.scenario_name or cls.__name__

    @classmethod
    def validate(cls) -> None:
        """Raise ConfigError (one line naming the scenario and file) if the class cannot run."""
        where = f"scenario {cls.__name__} ({_source_of(cls)})"
        if not isinstance(cls.model, str) or not cls.model.strip():
            raise ConfigError(f'{where} has no model; set e.g. model = "claude-haiku-4-5"')
        if isinstance(cls.max_tokens, bool) or not isinstance(cls.max_tokens, int) or cls.max_tokens <= 0:
            raise ConfigError(f"{where}: max_tokens must be a positive integer, got {cls.max_tokens!r}")
        uses_default_task = any(getattr(t, "__wrapped__", t) is AnthropicUser.call_once for t in cls.tasks)
        source = cls.prompt_source
        if source is not None:
            if not isinstance(source, PromptSource):
                raise ConfigError(f"{where}: prompt_source must be a harness.prompts source, got {source!r}")
            try:
                source.check()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif uses_default_task and cls.conversation is None and not (cls.prompt and cls.prompt.strip()):
            raise ConfigError(f'{where} has an empty prompt; set prompt = "..." or conversation = [...]')

    def build_request(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        system: Any = _UNSET,
        temperature: Any = _UNSET,
        stream: bool | None = None,
        **params: Any,
    ) -> MessageRequest:
        """The request :meth:`messages` sends: arguments first, then the class attributes.

        ``--model`` and ``--max-tokens`` on the command line override both.
        """
        if messages is None:
            if prompt is not None:
                messages = [user_message(prompt)]
            elif self.conversation is not None:
                messages = self.conversation
            else:
                messages = [user_message(self.prompt or "")]
        options = self.harness.options
        return MessageRequest(
            model=options.model or model or self.model,
            max_tokens=options.max_tokens or max_tokens or self.max_tokens,
            messages=messages,
            system=self.system if system is _UNSET else system,
            temperature=self.temperature if temperature is _UNSET else temperature,
            stream=self.stream if stream is None else stream,
            extra={**self.params, **params},
        )

    def messages(
        self,
        prompt: str | None = None,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> CallRecord:
        """Make one measured Messages API call and return its record.

        Takes the same arguments as :meth:`build_request`. A failed call does not raise:
        it is reported to Locust as a failure and ``record.ok`` is False.
        """
        host = self.host or self.environment.host
        if not host:
            raise ConfigError("no target: pass --host, set ANTHROPIC_BASE_URL, or run through the locust CLI")
        request = self.build_request(prompt, **kwargs)
        return call_with_retries(
            self.harness,
            request,
            host=host,
            scenario=name or self.name(),
            user_id=self.user_id,
        )

    @task
    def call_once(self) -> None:
        """The default task: one call with the class's configuration (or its prompt source's next request)."""
        if self.prompt_source is not None:
            self.messages(**self.prompt_source.next_request())
        else:
            self.messages()


def _source_of(cls: type) -> str:
    try:
        return inspect.getsourcefile(cls) or cls.__module__
    except TypeError:
        return cls.__module__
