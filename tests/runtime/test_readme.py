"""The README's topic graph is the registry's, so the documentation cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from ata.events.topics import REGISTRY
from ata.runtime.topology import TopicGraph

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_graph_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- topics-graph:start -->\n```mermaid\n", 1)[1].split("```\n<!-- topics-graph:end -->", 1)[0]
    assert block == TopicGraph.of(REGISTRY).to_mermaid(), "update README.md with `ata topics graph --mermaid`"


def test_readme_names_exactly_two_setup_commands() -> None:
    setup = README.read_text(encoding="utf-8").split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = [line.split()[0:2] for line in setup.split("```")[1].strip().splitlines()]
    assert commands == [["make", "run"], ["make", "test"]]
