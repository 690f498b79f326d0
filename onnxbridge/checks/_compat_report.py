"""What ``Artifact.compat`` returns: findings, each with the nodes, the operator and a fix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CompatFinding:
    """One thing that would fail on the target, with what to do about it."""

    problem: str
    fix: str
    op_type: str = ""
    domain: str = ""
    nodes: tuple[str, ...] = ()
    """Names of the nodes concerned (empty for a model-level finding such as the IR version)."""

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-friendly data."""
        return {"problem": self.problem, "fix": self.fix, "op_type": self.op_type, "domain": self.domain,
                "nodes": list(self.nodes)}  # fmt: skip


@dataclass
class CompatReport:
    """What would fail on a deployment target; ``ok`` when nothing would.

    ``checked`` and ``not_checked`` say what was looked at and what was not; ``notes`` lists what
    runs, but not as written (an operator run as its ONNX function, float16 run through casts).
    ``fallback`` is the report on the artifact's graph in standard operators (``art.fallback`` of
    a fused decoder), checked when this graph fails the target; ``None`` otherwise.
    """

    target: str
    findings: list[CompatFinding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fallback: CompatReport | None = None

    @property
    def ok(self) -> bool:
        """True when nothing checked would fail on the target."""
        return not self.findings

    def summary(self) -> dict[str, Any]:
        """The report as JSON-friendly data."""
        return {
            "target": self.target,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "checked": self.checked,
            "not_checked": self.not_checked,
            "notes": self.notes,
            "fallback": self.fallback.summary() if self.fallback is not None else None,
        }

    def to_json(self) -> str:
        """The summary as a JSON string."""
        return json.dumps(self.summary(), sort_keys=True)

    def __str__(self) -> str:
        verdict = "compatible" if self.ok else f"{len(self.findings)} problem(s)"
        lines = [f"Compatibility with {self.target}: {verdict}"]
        for f in self.findings:
            where = (
                f" [{f.op_type}{' in ' + f.domain if f.domain else ''}: {_nodes_text(f.nodes)}]" if f.op_type else ""
            )
            lines += [f"  - {f.problem}{where}", f"    fix: {f.fix}"]
        lines += [f"  checked: {c}" for c in self.checked]
        lines += [f"  not checked: {c}" for c in self.not_checked]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _nodes_text(nodes: tuple[str, ...]) -> str:
    named = [n or "<unnamed>" for n in nodes[:3]]
    return ", ".join(named) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
