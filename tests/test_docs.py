"""The README and docs/ as a reader meets them: commands, Python snippets, links and config keys still hold.

Runs offline and without a SparkSession: each command's ``--help`` comes from the real CLI in a subprocess, each
Python snippet runs in a subprocess of its own, and links and keys are checked against the files.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.config import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The HTML comment that exempts the Python snippet right after it, e.g. ``<!-- snippet: needs a lakehouse -->``.
NEEDS = re.compile(r"<!--\s*snippet:\s*needs (a lakehouse|a cluster)\s*-->")

#: spark-submit entry points whose file name is not the command's.
JOB_COMMANDS = {"profile_segments": "profile"}

#: Files whose names look like ``section.key`` (``report.py``, ``base.yaml``) are not config keys.
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".html", ".csv", ".png", ".txt", ".log", ".zip", ".whl", ".sh")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    exempt: str | None  # what the snippet needs, from the mark right before it

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def fenced_blocks(doc: Path) -> list[Block]:
    """Every fenced code block of ``doc`` (indented fences inside list items too), dedented."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, start = opening.group(1), opening.group(2), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = NEEDS.search(previous)
        blocks.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", mark.group(1) if mark else None))
        i += 1
    return blocks


def prose(doc: Path) -> str:
    """``doc`` without its fenced code blocks (their lines left empty, so line numbers stay)."""
    out, fence = [], False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            out.append("")
        else:
            out.append("" if fence else line)
    return "\n".join(out)


ALL_BLOCKS = [block for doc in DOCS for block in fenced_blocks(doc)]


# --- every `segspark <command> --option` in a bash block is a real command and option ---


@functools.cache
def cli_help(command: str) -> tuple[int, str]:
    """Exit code and output of ``python -m segspark.cli <command> --help`` (one subprocess per command)."""
    done = subprocess.run(
        [sys.executable, "-m", "segspark.cli", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def help_options(command: str) -> set[str]:
    code, text = cli_help(command)
    assert code == 0, f"segspark {command} --help exited {code}:\n{text}"
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", text))


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a bash snippet: continuations joined, comments dropped, split at ``&& || | ;``."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        current: list[str] = []
        # a comment starts a word (shlex would also cut `--archives conf.zip#conf` short)
        for word in shlex.split(re.sub(r"(^|\s)#.*$", "", line)):
            if word in {"&&", "||", "|", ";"}:
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
    return [command for command in commands if command]


def segspark_calls(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, options)`` for each ``segspark <command>`` and ``jobs/<command>.py`` call in ``block``."""
    calls = []
    for words in shell_commands(block.text):
        for at, word in enumerate(words):
            job = re.fullmatch(r"(?:\S*/)?jobs/(\w+)\.py", word)
            if Path(word).name in {"segspark", "segspark.cli"} and at + 1 < len(words):
                command, rest = words[at + 1], words[at + 2 :]
            elif job:
                command, rest = JOB_COMMANDS.get(job.group(1), job.group(1)), words[at + 1 :]
            else:
                continue
            options = [w.split("=", 1)[0] for w in rest if re.match(r"^--?[a-zA-Z]", w)]
            calls.append((command, options))
            break
    return calls


BASH_CALLS = [
    pytest.param(block, command, options, id=f"{block}-{command}")
    for block in ALL_BLOCKS
    if block.lang in {"bash", "sh", "console"}
    for command, options in segspark_calls(block)
]


def test_the_docs_show_segspark_commands():
    assert len(BASH_CALLS) >= 10  # the scan itself must find the commands the docs show


@pytest.mark.parametrize(("block", "command", "options"), BASH_CALLS)
def test_bash_snippet_uses_real_commands_and_options(block, command, options):
    unknown = sorted(set(options) - help_options(command))
    assert not unknown, f"{block}: segspark {command} has no option {', '.join(unknown)} (see its --help)"


# --- every Python snippet runs, unless marked as needing a lakehouse or a cluster ---

PYTHON_BLOCKS = [pytest.param(block, id=str(block)) for block in ALL_BLOCKS if block.lang == "python"]


def test_most_python_snippets_run():
    exempt = [block for block in ALL_BLOCKS if block.lang == "python" and block.exempt]
    runnable = [block for block in ALL_BLOCKS if block.lang == "python" and not block.exempt]
    assert runnable, "no Python snippet is run"
    assert len(exempt) <= 6, f"marks should stay rare: {', '.join(map(str, exempt))}"


@pytest.mark.parametrize("block", PYTHON_BLOCKS)
def test_python_snippet_runs(block, tmp_path):
    if block.exempt:
        pytest.skip(f"{block} needs {block.exempt}")
    done = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{block} failed:\n{block.text}\n{done.stderr}"


# --- every relative link points to a file, every #anchor to a heading ---


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def anchors(doc: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(doc).splitlines():
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            anchor = github_anchor(heading.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(found)


def links(doc: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose(doc).splitlines(), start=1):
        line = re.sub(r"`[^`]*`", "", line)  # link syntax inside inline code is not a link
        found += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return found


LINKS = [
    pytest.param(doc, number, target, id=f"{doc.name}:{number}:{target}")
    for doc in DOCS
    for number, target in links(doc)
    if not re.match(r"^[a-z]+:", target)  # http:, https:, mailto:
]


def test_the_docs_link_to_each_other():
    assert len(LINKS) >= 20


@pytest.mark.parametrize(("doc", "number", "target"), LINKS)
def test_relative_link_resolves(doc, number, target):
    path, _, anchor = target.partition("#")
    linked = (doc.parent / path).resolve() if path else doc
    where = f"{doc.relative_to(ROOT)}:{number}: {target}"
    assert linked.exists(), f"{where}: no such file"
    if anchor:
        assert linked.suffix == ".md", f"{where}: an anchor into a file that is not Markdown"
        assert anchor in anchors(linked), f"{where}: no heading with that anchor in {linked.name}"


# --- every config key the docs name exists in conf/base.yaml ---


def dotted_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= dotted_keys(value, prefix + key + ".")
    return keys


BASE = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text(encoding="utf-8"))
BASE_KEYS = dotted_keys(BASE)
#: Keys whose value is a free map: ``--set spark.conf.spark.sql.shuffle.partitions=16`` sets one entry.
MAP_KEYS = ("spark.conf", "source.csv_options", "model.attributes.csv_options")


def claimed_keys(doc: Path) -> list[tuple[int, str]]:
    """Config keys ``doc`` names: backticked ``section.key`` (a section of base.yaml, not a file name; a
    ``spark.`` name of three or more parts is Spark's own setting) and every ``--set KEY=VALUE``. A
    ``<placeholder>`` part ends the key (``tables.<name>`` claims ``tables``)."""
    found = []
    text = doc.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        for key in re.findall(r"--set\s+'?([a-z_][\w.]*)=", line):
            # everything after spark.conf. or source.csv_options. is one key of that map (a Spark setting)
            maps = [name for name in MAP_KEYS if key.startswith(name + ".")]
            found.append((number, maps[0] if maps else key))
        for code in re.findall(r"`([^`\s]+)`", line):
            parts = code.split(".")
            if len(parts) < 2 or parts[0] not in BASE or code.endswith(FILE_SUFFIXES):
                continue
            if parts[0] == "spark" and len(parts) > 2:
                continue
            if not all(re.fullmatch(r"[a-z_][a-z0-9_]*|<\w+>", part) for part in parts):
                continue
            kept = []
            for part in parts:
                if part.startswith("<"):
                    break
                kept.append(part)
            found.append((number, ".".join(kept)))
    return found


KEYS = [
    pytest.param(doc, number, key, id=f"{doc.name}:{number}:{key}") for doc in DOCS for number, key in claimed_keys(doc)
]


def test_the_docs_name_config_keys():
    assert len(KEYS) >= 30


@pytest.mark.parametrize(("doc", "number", "key"), KEYS)
def test_config_key_exists_in_base_yaml(doc, number, key):
    assert key in BASE_KEYS, f"{doc.relative_to(ROOT)}:{number}: `{key}` is not a key of conf/base.yaml"
