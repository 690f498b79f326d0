"""Two graphs of one model joined by an ONNX ``If``: one for the first step, one for every later step.

A decoder's code sometimes branches in Python on how long its past is (GIT widens its mask over
image tokens once there is a past; ProphetNet's decoder takes another path with a cache). An
exporter traces one branch, so a single graph is right either for the prompt (empty past) or for
later steps. :func:`first_step_branch` joins a graph traced for the prompt and one traced for a
step into one model: an ``If`` on the past's length takes the first when it is 0, the second
otherwise. The inputs and outputs are the step graph's; the weights both graphs hold (same name,
same bytes) are stored once, in the outer graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

__all__ = ["first_step_branch"]


def first_step_branch(step: onnx.ModelProto, first: onnx.ModelProto, past: str, axis: int) -> onnx.ModelProto:
    """``step``'s signature, running ``first`` when input ``past``'s ``axis`` is 0 and ``step`` otherwise.

    ``first`` takes a subset of ``step``'s inputs (by name, no cache) and returns the same outputs.
    """
    import onnx
    from onnx import helper

    shared = _shared_initializers(step.graph, first.graph)
    outer_inputs = {value.name for value in step.graph.input}
    then_branch = _as_branch(first.graph, "first_step", outer_inputs | shared, [o.name for o in step.graph.output])
    else_branch = _as_branch(step.graph, "later_steps", outer_inputs | shared, [o.name for o in step.graph.output])
    nodes = [
        helper.make_node("Shape", [past], ["first_step_branch.shape"], name="first_step_branch.Shape"),
        helper.make_node(
            "Gather",
            ["first_step_branch.shape", "first_step_branch.axis"],
            ["first_step_branch.length"],
            name="first_step_branch.Gather",
            axis=0,
        ),
        helper.make_node(
            "Equal",
            ["first_step_branch.length", "first_step_branch.zero"],
            ["first_step_branch.empty"],
            name="first_step_branch.Equal",
        ),
        helper.make_node(
            "If",
            ["first_step_branch.empty"],
            [o.name for o in step.graph.output],
            name="first_step_branch.If",
            then_branch=then_branch,
            else_branch=else_branch,
        ),
    ]
    constants = [
        helper.make_tensor("first_step_branch.axis", onnx.TensorProto.INT64, [], [axis]),
        helper.make_tensor("first_step_branch.zero", onnx.TensorProto.INT64, [], [0]),
    ]
    graph = helper.make_graph(
        nodes,
        step.graph.name,
        list(step.graph.input),
        list(step.graph.output),
        initializer=[t for t in step.graph.initializer if t.name in shared] + constants,
    )
    model = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version)
    model.producer_name, model.producer_version = step.producer_name, step.producer_version
    model.functions.extend(step.functions)
    known = {(f.domain, f.name) for f in step.functions}
    model.functions.extend(f for f in first.functions if (f.domain, f.name) not in known)
    model.metadata_props.extend(step.metadata_props)
    return model


def _shared_initializers(a: onnx.GraphProto, b: onnx.GraphProto) -> set[str]:
    """Initializer names both graphs hold with the same type, shape and bytes (the model's weights)."""
    theirs = {t.name: t for t in b.initializer}
    return {
        t.name
        for t in a.initializer
        if t.name in theirs
        and (t.data_type, list(t.dims)) == (theirs[t.name].data_type, list(theirs[t.name].dims))
        and t.SerializeToString() == theirs[t.name].SerializeToString()
    }


def _as_branch(graph: onnx.GraphProto, prefix: str, outer: set[str], outputs: list[str]) -> onnx.GraphProto:
    """``graph`` as an ``If`` branch: no inputs (read from the outer scope), its own names prefixed.

    ONNX names are unique across a model and its subgraphs, so every value the branch makes (and
    every initializer it keeps for itself) takes ``prefix``; names of the outer graph's inputs and
    shared initializers are left as they are.
    """
    import onnx
    from onnx import helper

    def rename(name: str) -> str:
        return name if not name or name in outer else f"{prefix}.{name}"

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{prefix}.{node.name}" if node.name else ""
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        for attribute in copy.attribute:  # nested subgraphs read the same names
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rename_subgraph(attribute.g, rename)
            for sub in attribute.graphs:
                _rename_subgraph(sub, rename)
        nodes.append(copy)
    own = []
    for tensor in graph.initializer:
        if tensor.name in outer:
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename(tensor.name)
        own.append(copy)
    by_name = {o.name: o for o in graph.output}
    branch_outputs = []
    for name in outputs:
        value = onnx.ValueInfoProto()
        value.CopyFrom(by_name[name])
        value.name = rename(name)
        branch_outputs.append(value)
    return helper.make_graph(nodes, prefix, [], branch_outputs, initializer=own)


def _rename_subgraph(graph: onnx.GraphProto, rename: Callable[[str], str]) -> None:
    """Rename, inside a nested subgraph, the references to values of the graph being turned into a branch."""
    import onnx

    produced = {name for node in graph.node for name in node.output} | {i.name for i in graph.input}
    produced |= {t.name for t in graph.initializer}
    for node in graph.node:
        node.input[:] = [n if n in produced else rename(n) for n in node.input]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rename_subgraph(attribute.g, rename)
    for output in graph.output:
        if output.name not in produced:
            output.name = rename(output.name)
