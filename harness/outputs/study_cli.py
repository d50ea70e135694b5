"""``python -m harness.study``: the command line of a lever study, and the Locust run it builds.

``python -m harness.study [-f LOCUSTFILE] A B [C ...] --users N --calls N --report-dir DIR``
compares scenario classes as the arms of one experiment (the first is the baseline);
``--levers [KEYS]`` takes the arms of the latency guide's levers from the scenario library
(:data:`harness.core.schedule.LEVERS`). The run is a real Locust run in this process, built
as the ``locust`` CLI builds one: an ``Environment`` with a ``LocalRunner``, the harness
attached with the same options (declared once, :mod:`harness.core.options`, so every flag
also reads its ``LOCUST_*`` environment variable) and the features that fit a study (safety,
shutdown, start-up with the embedded simulator when there is no target, retries, rate
limits, spend guard, generator health). :class:`~harness.outputs.study_run.Study` runs it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import configargparse
import gevent
from locust.env import Environment
from locust.log import setup_logging
from locust.user import User
from locust.util.load_locustfile import load_locustfile

from harness.core.compare import RESAMPLES, parse_precision
from harness.core.errors import ConfigError
from harness.core.exitcodes import EXIT_CONFIG
from harness.core.options import add_options, from_namespace, option
from harness.core.schedule import LEVERS, Lever, ad_hoc_lever, lever_arms, select_levers
from harness.monitors import health, ratelimits, spend
from harness.outputs.study_run import Study, StudyPlan
from harness.runtime import catalog, retries, safety, shutdown, startup
from harness.runtime.features import Feature
from harness.runtime.options import HarnessOptions
from harness.runtime.state import attach
from harness.runtime.user import AnthropicUser

__all__ = ["StudyOptions", "build_parser", "main"]

DEFAULT_CALLS = 24
PRECISION_MAX_CALLS = 1000
DEFAULT_REPORT_DIR = "study"
EXIT_FAILED_CALLS = 1  # Locust's own code when calls failed

# In the plugin's order (harness.plugin.FEATURES), the ones a study uses.
FEATURES: tuple[Feature[Any], ...] = (
    safety.FEATURE,
    shutdown.FEATURE,
    startup.FEATURE,
    retries.FEATURE,
    ratelimits.FEATURE,
    spend.FEATURE,
    health.FEATURE,
)
# The option dataclasses those features (and the run itself) read, grouped as in python -m harness.help.
OPTION_GROUPS: tuple[tuple[str, type], ...] = (
    ("harness options", HarnessOptions),
    ("retries", retries.RetryPolicy),
    ("spend guard", spend.SpendOptions),
    ("generator health", health.HealthOptions),
    ("scenarios", catalog.CatalogOptions),
)


def _precision(raw: Any) -> float | None:
    return None if raw is None else parse_precision(str(raw))


@dataclass(frozen=True)
class StudyOptions:
    """How long a study runs and how its blocks are cut."""

    calls: int | None = option(
        "--calls",
        default=None,
        type=int,
        metavar="N",
        help=f"Measured calls per arm (warm-ups not counted): whole rounds run until every arm has N. With "
        f"--precision, the most per arm. Default {DEFAULT_CALLS} ({PRECISION_MAX_CALLS} with --precision).",
    )
    block_calls: int | None = option(
        "--block-calls",
        default=None,
        type=int,
        metavar="N",
        help="Measured calls per block, after its warm-up (each user's first call). Default: 3 x --users.",
    )
    block_seconds: float | None = option(
        "--block-seconds",
        default=None,
        type=float,
        metavar="S",
        help="End each block S seconds after it starts (calls in flight finish); with --block-calls, "
        "whichever comes first. Default: blocks end by --block-calls only.",
    )
    seed: int = option(
        "--seed", default=0, type=int, metavar="N", help="Seed of the arms' order in each round and of the bootstrap."
    )
    precision: float | None = option(
        "--precision",
        default=None,
        metavar="PCT",
        convert=_precision,
        help="Run rounds until every 95%% interval's half-width is below PCT of the baseline (e.g. 5%%), "
        "judged from 10 rounds on, or until --calls / --max-cost. Default: run --calls.",
    )
    resamples: int = option(
        "--resamples",
        default=RESAMPLES,
        type=int,
        metavar="N",
        help=f"Bootstrap resamples per interval. Default {RESAMPLES}.",
    )

    def __post_init__(self) -> None:
        for flag, value in (("--calls", self.calls), ("--block-calls", self.block_calls)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be a positive number of calls, got {value}")
        if self.block_seconds is not None and self.block_seconds <= 0:
            raise ConfigError(f"--block-seconds must be a positive number of seconds, got {self.block_seconds}")
        if self.resamples < 100:
            raise ConfigError(f"--resamples must be 100 or more for a 95% interval, got {self.resamples}")


def build_parser() -> configargparse.ArgumentParser:
    keys = ", ".join(lever.key for lever in LEVERS)
    parser = configargparse.ArgumentParser(
        prog="python -m harness.study",
        description="Compare scenarios as the arms of one experiment: interleaved blocks at one load, each\n"
        "difference of p50 and p95 with its 95% confidence interval. Writes DIR/study.json, DIR/study.html,\n"
        "requests.jsonl (each call with its arm, round and block) and summary.json; prints the table.",
        epilog="examples:\n"
        "  python -m harness.study --levers --users 4                 # every lever of the latency guide\n"
        "  python -m harness.study --levers model,streaming --users 8 --precision 5%\n"
        "  python -m harness.study -f my_locustfile.py Baseline Candidate --users 4 --calls 200\n"
        "exit codes: 0 done; 1 calls failed; 2 invalid configuration; 5 --max-cost reached; "
        "130 / 143 interrupted (Ctrl-C / SIGTERM; every file is still written)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "arms",
        nargs="*",
        metavar="ARM",
        help="scenario classes of the locustfile to compare; the first is the baseline",
    )
    parser.add_argument(
        "--levers",
        nargs="?",
        const="all",
        metavar="KEYS",
        help=f"the latency guide's levers instead of named arms: all, or some of {keys} (comma-separated)",
    )
    locust = parser.add_argument_group("Locust options")
    locust.add_argument(
        "-f", "--locustfile", default="locustfile.py", env_var="LOCUST_LOCUSTFILE", help="where the arms are defined"
    )
    locust.add_argument(
        "-H",
        "--host",
        env_var="LOCUST_HOST",
        help="target URL (default: ANTHROPIC_BASE_URL, the API, or the simulator)",
    )
    locust.add_argument(
        "-u",
        "--users",
        dest="num_users",
        type=int,
        default=1,
        env_var="LOCUST_USERS",
        help="users per block (default 1)",
    )
    locust.add_argument("-L", "--loglevel", default="INFO", env_var="LOCUST_LOGLEVEL", help="log level (default INFO)")
    locust.add_argument("--logfile", env_var="LOCUST_LOGFILE", help="log to this file instead of stderr")
    add_options(parser.add_argument_group("study"), StudyOptions)
    for title, options_class in OPTION_GROUPS:
        add_options(parser.add_argument_group(title), options_class)
    # A study always writes its files: --report-dir has a default here.
    parser.set_defaults(report_dir=DEFAULT_REPORT_DIR)
    for action in parser._actions:
        if action.dest == "report_dir":
            action.help = (
                f"Write study.json, study.html, requests.jsonl and summary.json to DIR. Default: {DEFAULT_REPORT_DIR}."
            )
    return parser


def plan_from(namespace: argparse.Namespace) -> StudyPlan:
    """The study's plan from its options; raises ConfigError."""
    options = from_namespace(StudyOptions, namespace)
    arms: list[str] = list(namespace.arms)
    levers: list[Lever]
    if namespace.levers is not None:
        if arms:
            raise ConfigError(f"name arms ({' '.join(arms)}) or give --levers, not both")
        keys = None if namespace.levers == "all" else [k.strip() for k in namespace.levers.split(",") if k.strip()]
        levers = select_levers(keys)
        arms = lever_arms(levers)
    else:
        if not arms:
            raise ConfigError("name two or more scenario classes to compare, or give --levers")
        levers = [ad_hoc_lever(arms)]
    users = namespace.num_users
    if users < 1:
        raise ConfigError(f"--users must be 1 or more, got {users}")
    calls = options.calls or (PRECISION_MAX_CALLS if options.precision is not None else DEFAULT_CALLS)
    block_calls = options.block_calls
    if block_calls is None and options.block_seconds is None:
        block_calls = 3 * users
    return StudyPlan(
        arms=tuple(arms),
        levers=tuple(levers),
        users=users,
        calls=calls,
        block_calls=block_calls,
        block_seconds=options.block_seconds,
        seed=options.seed,
        precision=options.precision,
        resamples=options.resamples,
    )


def load_arms(locustfile: str, arms: Sequence[str]) -> list[type[User]]:
    """The arms' scenario classes from ``locustfile``; raises ConfigError naming what is missing."""
    if not os.path.isfile(locustfile):
        raise ConfigError(f"locustfile {locustfile!r} not found; give the file that defines the arms with -f")
    user_classes, _ = load_locustfile(locustfile)
    chosen: list[type[User]] = []
    for arm in arms:
        user_class = user_classes.get(arm)
        if user_class is None:
            known = ", ".join(sorted(user_classes)) or "none"
            raise ConfigError(f"{arm} is not a scenario class of {locustfile} (it has: {known})")
        if not issubclass(user_class, AnthropicUser):
            raise ConfigError(f"{arm} in {locustfile} is not an AnthropicUser scenario; a study measures LLM calls")
        chosen.append(user_class)
    return chosen


def build_study(namespace: argparse.Namespace) -> Study:
    """The environment, the harness and its features, and the study on them; raises ConfigError."""
    plan = plan_from(namespace)
    classes = load_arms(namespace.locustfile, plan.arms)
    environment = Environment(user_classes=classes, host=namespace.host, parsed_options=namespace)
    environment.create_local_runner()
    harness = attach(environment, HarnessOptions.from_namespace(namespace))
    catalog.bind_sources(environment)  # --dataset, as the scenarios feature does
    for feature in FEATURES:
        harness.install(feature)
    return Study(environment, plan)


_signals: list[int] = []


def _deliver_sigterm_to_main_greenlet() -> None:
    # As the shutdown feature does for Ctrl-C: the interrupt lands in the study's loop, never in a user's call.
    main = gevent.getcurrent()

    def on_sigterm() -> None:
        _signals.append(signal.SIGTERM)
        gevent.kill(main, KeyboardInterrupt)

    gevent.signal_handler(signal.SIGTERM, on_sigterm)


def main(argv: Sequence[str] | None = None) -> int:
    namespace = build_parser().parse_args(argv)
    setup_logging(namespace.loglevel, namespace.logfile)
    try:
        study = build_study(namespace)
    except ConfigError as exc:
        sys.stderr.write(f"python -m harness.study: error: {exc}\n")
        sys.stderr.flush()
        return EXIT_CONFIG
    _deliver_sigterm_to_main_greenlet()
    environment = study.environment
    estimate = study.estimate()
    study.print_estimate(estimate, sys.stdout)
    study.run()
    environment.events.quitting.fire(environment=environment, reverse=True)
    doc = study.finish(Path(namespace.report_dir), sys.stdout, estimate)
    if study.interrupted:
        code = 128 + (_signals[-1] if _signals else signal.SIGINT)
    elif environment.process_exit_code is not None:
        code = environment.process_exit_code
    elif any(arm["errors"] for arm in doc["arms"].values()):
        code = EXIT_FAILED_CALLS
    else:
        code = 0
    environment.events.quit.fire(exit_code=code)
    return code
