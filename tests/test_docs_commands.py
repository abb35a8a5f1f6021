"""Every command the README and docs/*.md show still runs as written: each ``wavelist ...`` line names a real
subcommand and only flags its parser takes (checked against the parsers themselves; no job runs), each
``make X`` a Makefile target, each ``benchmarks/X.py`` or ``python -m benchmarks.X`` a file that exists."""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GLOBAL_FLAGS = {"-v", "--verbose", "--debug", "-h", "--help"}
FLAG = re.compile(r"^[\[(]*(--?[A-Za-z][\w-]*)")


def code_lines(text: str) -> list[str]:
    """The lines of fenced code blocks (continuation lines joined, a ``$`` prompt dropped) and the inline code
    spans of the prose."""
    lines, inline = [], []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            lines.append(re.sub(r"^\s*\$ ", "", line).strip())
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    inline = [span.strip() for span in re.findall(r"`([^`\n]+)`", prose)]
    return lines + inline


def commands(text: str, program: str) -> list[list[str]]:
    """The words of each line that runs ``program`` (``wavelist``, ``make``), comments left out."""
    found = []
    for line in code_lines(text):
        if not line.startswith(program + " "):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in prose: plain words are enough to find flags
            words = line.split("#")[0].split()
        found.append(words[1:])
    return found


def beam_flags() -> set[str]:
    """The flags Beam itself takes (the jobs pass them on): those of Beam's own options classes."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs.common import _all_subclasses

    parser = argparse.ArgumentParser(add_help=False)
    for cls in dict.fromkeys(_all_subclasses(PipelineOptions)):
        if cls.__module__.startswith("apache_beam."):
            try:
                cls._add_argparse_args(parser)
            except argparse.ArgumentError:
                continue
    return set(parser._option_string_actions)


class _Built(Exception):
    """Carries the parser a command built, instead of parsing with it."""


@cache
def job_flags(name: str) -> frozenset[str]:
    """The flags ``wavelist NAME`` takes for a job: its options classes (and the shared ``--out``,
    ``--overwrite``) and Beam's own for the Beam jobs; the parser it builds for train and evaluate."""
    from schemas.flags import FlagParser
    from wavelist.cli import BEAM_JOBS, JOBS

    module = importlib.import_module(JOBS[name])
    if name in BEAM_JOBS:
        from beam_jobs.common import OutputOptions

        parser = argparse.ArgumentParser(add_help=True)
        for options in (*module.OPTIONS, OutputOptions):
            options._add_argparse_args(parser)
        return frozenset(parser._option_string_actions) | beam_flags()

    def built(self, args=None, namespace=None):
        raise _Built(self)

    original = FlagParser.parse_args
    FlagParser.parse_args = built
    try:
        module.parse_args([])
    except _Built as captured:
        return frozenset(captured.args[0]._option_string_actions)
    finally:
        FlagParser.parse_args = original
    raise AssertionError(f"{JOBS[name]}.parse_args built no FlagParser")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def problems(words: list[str]) -> list[str]:
    """What is wrong with ``wavelist WORDS`` as the docs show it (empty: nothing)."""
    from wavelist.cli import JOBS, build_parser

    words = [w for w in words if w not in GLOBAL_FLAGS]
    if not words or not re.match(r"^[a-z][\w-]*$", words[0]):  # `wavelist -v COMMAND ...`: a placeholder;
        return []  # `wavelist serve: error: ...`: a message
    parser, name, rest = build_parser(), [], words
    while subcommands(parser) and rest:
        choices = subcommands(parser)
        wanted = [rest[0]]
        while len(rest) > 2 and rest[1] == "|":  # `wavelist subsonic radio | journey | like`
            wanted.append(rest[2])
            rest = rest[2:]
        unknown = [w for w in wanted if w not in choices]
        if unknown:
            return [f"no subcommand {' '.join(name + unknown[:1])!r}"]
        name.append(wanted[0])
        parser, rest = choices[wanted[0]], rest[1:]
    known = job_flags(name[0]) if name[0] in JOBS else frozenset(parser._option_string_actions)
    flags = [m.group(1) for m in map(FLAG.match, rest) if m]
    return [f"wavelist {' '.join(name)} takes no {flag}" for flag in flags if flag not in known]


def test_the_checker_finds_a_wrong_subcommand_and_flag():
    assert problems(["radio", "--tables", "T", "--seed", "1", "-n", "5"]) == []
    assert problems(["radio", "--tables", "T", "--sede", "1"]) == ["wavelist radio takes no --sede"]
    assert problems(["mpd", "radio", "--keep-going", "[--variety", "0.3]"]) == []
    assert problems(["mpd", "shuffle"]) == ["no subcommand 'mpd shuffle'"]
    assert problems(["ingest", "--audio-dir", "A", "--out", "D", "--runner", "DataflowRunner"]) == []
    assert problems(["ingest", "--k", "5"]) == ["wavelist ingest takes no --k"]  # embed's flag, not ingest's
    assert problems(["train", "--data", "D", "--budget-minutes", "60"]) == []
    assert problems(["train", "--diffusion", "5"]) == ["wavelist train takes no --diffusion"]
    assert commands("text `wavelist radio --seed 2` and\n```sh\n$ wavelist journey \\\n  --to 3  # --no\n```\n",
                    "wavelist") == [["journey", "--to", "3"], ["radio", "--seed", "2"]]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_wavelist_command_shown_exists_with_its_flags(document):
    text = document.read_text(encoding="utf-8")
    # a kind that the page's example diff declares exists only once the diff is applied (tests/test_kinds.py)
    example_kinds = set(re.findall(r'^\+\s*Kind\("([\w-]+)"', text, flags=re.M))
    found = [f"{' '.join(words)}: {problem}" for words in commands(text, "wavelist")
             if not (words and words[0] in example_kinds) for problem in problems(words)]
    assert not found, "\n".join(found)


def test_make_targets_and_benchmarks_named_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    missing = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        name = document.relative_to(ROOT)
        missing += [f"{name}: make {words[0]}" for words in commands(text, "make")
                    if words and not words[0].startswith("-") and words[0] not in targets]
        for path in re.findall(r"\bbenchmarks/[\w/]+\.(?:py|sh|md)\b", text):
            missing += [] if (ROOT / path).exists() else [f"{name}: {path}"]
        for module in re.findall(r"python3? -m (benchmarks(?:\.[a-z_]\w*)+)", text):  # not benchmarks.NAME
            path = ROOT / module.replace(".", "/")
            missing += [] if path.with_suffix(".py").exists() or path.is_dir() else [f"{name}: {module}"]
    assert not missing, "\n".join(missing)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M)}


def test_every_relative_link_leads_to_a_file_and_heading():
    assert "wavelist-ingest-beam" in anchors("# x\n## `wavelist ingest` (Beam)\n```\n# not a heading\n```\n")
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            if path.endswith("extending.md") and not file.exists():  # being written in another part of issue 33
                continue
            if not file.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
