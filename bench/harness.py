"""Timing, comparison tables and targets shared by the benchmark scripts.

A *scenario* is one operation (say "get hit, memory backend") done by several *contenders* (beaker-core, Beaker,
dogpile.cache, a raw client). Every contender is a ``timeit`` statement with its own globals, so the loop overhead is
the same for all of them. Measuring goes like this:

1. each contender's ``check()`` runs first and must return normally: it proves the statement does the work it claims
   (a hit really hits, a counter really counts), so a fast but wrong contender cannot win;
2. each contender is calibrated to a loop count that takes about ``min_time`` seconds;
3. ``repeats`` rounds follow, and in each round every contender is timed once, one after the other, so that a
   slow-down of the machine hits every contender alike instead of a single one;
4. the figure of a contender is the minimum over the rounds (the usual timeit reading: the run least disturbed by
   the rest of the machine); the median is printed beside it.

A target is judged on the minimum and again on the median; a target met by only one of them says so.
Garbage collection is off while a loop runs (timeit's default), for every contender alike.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import timeit
from dataclasses import dataclass, field
from typing import Any, Callable

SUBJECT = "beaker-core"


@dataclass
class Contender:
    """One way of doing a scenario's operation.

    :param label: the library (``beaker-core``, ``Beaker 1.14.1``...); targets refer to contenders by label.
    :param what: the call being timed, in words (``Cache.get``).
    :param stmt: the statement timed, evaluated in ``namespace``.
    :param before_round: untimed, run before each timed loop (reset a key iterator, empty a cache).
    :param check: untimed, run once before timing; raises if the statement does not do what it should.
    :param max_number: a cap on the loop count (for statements that consume prepared keys).
    """

    label: str
    what: str
    stmt: str
    namespace: dict[str, Any]
    before_round: Callable[[], None] | None = None
    check: Callable[[], None] | None = None
    max_number: int | None = None
    seconds: list[float] = field(default_factory=list)  # per operation, one per round
    number: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class Target:
    """What the scenario promises.

    ``kind`` is ``faster`` (``reference`` takes at least ``bound`` times as long as ``subject``), ``within_ratio``
    (``subject`` takes at most ``bound`` times as long as ``reference``) or ``within_us`` (``subject`` takes at most
    ``bound`` microseconds more than ``reference``).
    """

    kind: str
    reference: str
    bound: float
    subject: str = SUBJECT

    def describe(self) -> str:
        if self.kind == "faster":
            return f">= {self.bound:g}x faster than {self.reference}"
        if self.kind == "within_ratio":
            return f"within {self.bound:g}x of {self.reference}"
        return f"within {self.bound:g} us of {self.reference}"

    def met(self, subject: float, reference: float) -> bool:
        if self.kind == "faster":
            return reference >= self.bound * subject
        if self.kind == "within_ratio":
            return subject <= self.bound * reference
        return (subject - reference) * 1e6 <= self.bound


@dataclass
class Bound:
    """A target on a count rather than a time: ``measured`` (say, round trips per request) is at most ``bound``."""

    what: str
    measured: float
    bound: float
    detail: str = ""

    def describe(self) -> str:
        return f"{self.what} <= {self.bound:g}"

    def figure(self) -> str:
        return f"{self.measured:g}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Scenario:
    title: str
    contenders: list[Contender]
    targets: list[Target] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other measured facts printed under the table
    bounds: list[Bound] = field(default_factory=list)


class Session:
    """One benchmark run: options, the scenarios measured so far, and their report."""

    def __init__(self, name: str, description: str, *, repeats: int = 7, min_time: float = 0.2,
                 arguments: Any = None):
        """``arguments(parser)``, when given, adds a benchmark's own command line options."""
        parser = argparse.ArgumentParser(prog=f"bench/{name}.py", description=description)
        parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", repeats)),
                            help=f"timed rounds per contender (default {repeats}, env BENCH_REPEATS)")
        parser.add_argument("--min-time", type=float, default=float(os.environ.get("BENCH_MIN_TIME", min_time)),
                            help=f"seconds one timed loop should last (default {min_time}, env BENCH_MIN_TIME)")
        parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                            help="run only the scenarios whose title contains this text")
        parser.add_argument("--json", dest="json_path", default=os.environ.get("BENCH_JSON"),
                            help="append the results, as JSON lines, to this file")
        parser.add_argument("--profile", default="",
                            help="instead of timing, profile the contender 'SCENARIO TEXT::LABEL' with cProfile")
        parser.add_argument("--profile-number", type=int, default=200_000,
                            help="calls made under the profiler (default 200000)")
        parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile",
                            help="the profiler used by --profile (default cprofile)")
        if arguments is not None:
            arguments(parser)
        self.options = parser.parse_args()
        self.name = name
        self.scenarios: list[Scenario] = []
        self.missed: list[str] = []

    def wanted(self, title: str) -> bool:
        only = self.options.only
        profile = self.options.profile.split("::")[0]
        return (not only or only.lower() in title.lower()) and (not profile or profile.lower() in title.lower())

    def run(self, scenario: Scenario) -> None:
        if not self.wanted(scenario.title):
            return
        for contender in scenario.contenders:
            if contender.check is not None:
                try:
                    contender.check()
                except Exception as exc:
                    raise SystemExit(f"{scenario.title} / {contender.label}: the check failed: {exc!r}") from exc
        if self.options.profile:
            self._profile(scenario)
            return
        measure(scenario.contenders, self.options.repeats, self.options.min_time)
        self.scenarios.append(scenario)
        print(render(scenario, self.missed), flush=True)
        if self.options.json_path:
            with open(self.options.json_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(as_record(self.name, scenario)) + "\n")

    def _profile(self, scenario: Scenario) -> None:
        import cProfile
        import pstats

        label = self.options.profile.split("::", 1)[1] if "::" in self.options.profile else SUBJECT
        for contender in scenario.contenders:
            if contender.label.lower() != label.lower():
                continue
            number = min(self.options.profile_number, contender.max_number or self.options.profile_number)
            if contender.before_round:
                contender.before_round()
            code = compile(f"for _ in range({number}):\n    {contender.stmt}", "<bench>", "exec")
            print(f"== profile of {scenario.title} / {contender.label} / {contender.what}: {number} calls")
            if self.options.profiler == "pyinstrument":
                from pyinstrument import Profiler
                profiler = Profiler(interval=0.0001)
                profiler.start()
                exec(code, contender.namespace, {})
                profiler.stop()
                print(profiler.output_text(unicode=True, color=False, show_all=False))
            else:
                profiler = cProfile.Profile()
                profiler.runctx(code, contender.namespace, {})
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    def finish(self) -> int:
        if self.options.profile:
            return 0
        if self.missed:
            print(f"{self.name}: {len(self.missed)} target(s) missed:")
            for line in self.missed:
                print(f"  MISS  {line}")
        else:
            print(f"{self.name}: every target met")
        return 0


def measure(contenders: list[Contender], repeats: int, min_time: float) -> None:
    timers = []
    for contender in contenders:
        timer = timeit.Timer(contender.stmt, globals=contender.namespace)
        number = 1
        while True:
            if contender.before_round:
                contender.before_round()
            elapsed = timer.timeit(number)
            if elapsed >= min_time / 5 or (contender.max_number and number >= contender.max_number):
                break
            number *= 10 if elapsed < min_time / 50 else 2
            if contender.max_number:
                number = min(number, contender.max_number)
        # a second look at the calibrated count, so that one stall of the machine does not shrink the loop
        if contender.before_round:
            contender.before_round()
        elapsed = min(elapsed, timer.timeit(number))
        number = max(1, int(number * min_time / max(elapsed, 1e-9)))
        if contender.max_number:
            number = min(number, contender.max_number)
        contender.number = number
        contender.seconds = []
        timers.append(timer)
    for _ in range(repeats):
        for contender, timer in zip(contenders, timers):
            if contender.before_round:
                contender.before_round()
            contender.seconds.append(timer.timeit(contender.number) / contender.number)


def _by_label(scenario: Scenario) -> dict[str, Contender]:
    return {contender.label: contender for contender in scenario.contenders}


def verdicts(scenario: Scenario) -> list[tuple[Target, bool, bool]]:
    by_label = _by_label(scenario)
    out = []
    for target in scenario.targets:
        subject, reference = by_label[target.subject], by_label[target.reference]
        out.append((target, target.met(subject.best, reference.best), target.met(subject.median, reference.median)))
    return out


def verdict_word(on_min: bool, on_median: bool) -> str:
    if on_min and on_median:
        return "PASS"
    if on_min:
        return "PASS on min, MISS on median"
    if on_median:
        return "MISS on min, PASS on median"
    return "MISS"


def render(scenario: Scenario, missed: list[str]) -> str:
    subject = _by_label(scenario).get(SUBJECT, scenario.contenders[0])
    width = max(len(f"{c.label} {c.what}") for c in scenario.contenders) + 2
    lines = [f"\n== {scenario.title}",
             f"   {'':<{width}}{'us/op min':>10}{'median':>10}{'loops':>10}   time / beaker-core's"]
    for contender in scenario.contenders:
        ratio = contender.best / subject.best
        lines.append(f"   {contender.label + ' ' + contender.what:<{width}}{contender.best * 1e6:>10.3f}"
                     f"{contender.median * 1e6:>10.3f}{contender.number:>10}   {ratio:6.2f}x")
    for target, on_min, on_median in verdicts(scenario):
        word = verdict_word(on_min, on_median)
        detail = _target_figure(scenario, target)
        lines.append(f"   target: {target.subject} {target.describe()}: {detail}  {word}")
        if word != "PASS":
            missed.append(f"{scenario.title}: {target.subject} {target.describe()} ({detail})")
    for bound in scenario.bounds:
        word = "PASS" if bound.measured <= bound.bound else "MISS"
        lines.append(f"   target: {SUBJECT} {bound.describe()}: {bound.figure()}  {word}")
        if word != "PASS":
            missed.append(f"{scenario.title}: {SUBJECT} {bound.describe()} ({bound.figure()})")
    for key, value in scenario.extra.items():
        lines.append(f"   {key}: {value}")
    if scenario.note:
        lines.append(f"   note: {scenario.note}")
    return "\n".join(lines)


def _target_figure(scenario: Scenario, target: Target) -> str:
    by_label = _by_label(scenario)
    subject, reference = by_label[target.subject], by_label[target.reference]
    if target.kind == "faster":
        return f"{reference.best / subject.best:.2f}x faster (median {reference.median / subject.median:.2f}x)"
    if target.kind == "within_ratio":
        return f"{subject.best / reference.best:.3f}x (median {subject.median / reference.median:.3f}x)"
    return (f"{(subject.best - reference.best) * 1e6:+.3f} us "
            f"(median {(subject.median - reference.median) * 1e6:+.3f} us)")


def as_record(bench: str, scenario: Scenario) -> dict[str, Any]:
    return {
        "bench": bench,
        "title": scenario.title,
        "contenders": [{"label": c.label, "what": c.what, "us_min": c.best * 1e6, "us_median": c.median * 1e6,
                        "loops": c.number, "rounds": len(c.seconds)} for c in scenario.contenders],
        "targets": [{"target": f"{t.subject} {t.describe()}", "figure": _target_figure(scenario, t),
                     "verdict": verdict_word(on_min, on_median)} for t, on_min, on_median in verdicts(scenario)]
        + [{"target": f"{SUBJECT} {b.describe()}", "figure": b.figure(),
            "verdict": "PASS" if b.measured <= b.bound else "MISS"} for b in scenario.bounds],
        "extra": {key: str(value) for key, value in scenario.extra.items()},
        "note": scenario.note,
    }


# -- the machine -----------------------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "load average (1, 5, 15 min)": " ".join(f"{load:.2f}" for load in os.getloadavg()),
    }


def filesystem(path: str) -> str:
    """The type of the filesystem holding ``path`` (``ext4``, ``tmpfs``...), from /proc/mounts."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount_point = fields[1].replace("\\040", " ")
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, fields[2]
    except OSError:
        pass
    return kind


def data_roots(prefix: str) -> list[tuple[str, str]]:
    """Temporary directories for file-backed scenarios: (label, path) on the default temporary directory's disk,
    and on /dev/shm when it is a tmpfs (the same code without the disk's cost, which shows the libraries' own
    overhead). ``BENCH_DATA_DIRS`` (``:``-separated) replaces the list. The caller removes them."""
    import tempfile

    wanted = os.environ.get("BENCH_DATA_DIRS")
    parents = [p for p in wanted.split(":") if p] if wanted else [tempfile.gettempdir()]
    if not wanted and os.path.isdir("/dev/shm") and filesystem("/dev/shm") == "tmpfs":
        parents.append("/dev/shm")
    roots = []
    for parent in parents:
        root = tempfile.mkdtemp(prefix=prefix, dir=parent)
        roots.append((f"{filesystem(root)} {parent}", root))
    return roots


def versions(*distributions: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_revision(path: str) -> str:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--", "beaker_core", "plugins"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_header(title: str, distributions: tuple[str, ...]) -> None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    facts = machine()
    facts["beaker-core revision"] = git_revision(repo)
    facts.update(versions(*distributions))
    facts["interpreter"] = sys.executable
    print(f"# {title}")
    for key, value in facts.items():
        print(f"#   {key}: {value}")
    sys.stdout.flush()
