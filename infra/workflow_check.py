"""Deploy-time rules of Google Cloud Workflows that workflows-emulator does not check.

Workflows validates a source when it is deployed; workflows-emulator runs
whatever it is given and fails, if at all, only when the bad step runs (a
call to a missing subworkflow surfaces as a confusing ``SyntaxError``). This
module applies the rules that matter for this project to a parsed source,
so the tests, ``python -m local run`` and ``pulumi up`` refuse a source that
Workflows would refuse, naming the subworkflow, the step and the reason.

Checked:

- **variable scope** (Workflows docs, "Variables", "Variable scope"): a
  variable first created inside a ``for`` body, an ``except`` block or a
  ``parallel`` branch exists only there; reading it anywhere else is an
  error. So is reading a name nothing creates: not a parameter, an
  ``assign`` target, a ``result``, a loop variable or an ``as``;
- **calls**: ``call: name`` without a dot must name a subworkflow defined in
  the same source (standard library functions and connectors are dotted);
  a ``retry`` predicate must name one too;
- **jumps**: ``next:`` names a step of the same subworkflow, or ``end``;
  ``break`` and ``continue`` only inside a ``for`` body;
- **expression length**: at most MAX_EXPRESSION_CHARS characters per
  ``${...}`` (Workflows quotas and limits, "Expression length").

Not checked: a parallel branch writing a parent variable it does not list
in ``shared``, types, argument names of calls, the standard library's
function names, expression syntax beyond finding variable names, and
anything only an execution shows (a connector's errors, a missing key).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Namespaces of the standard library and connectors: ``sys.now()``,
# ``map.get(...)``, ``googleapis.firestore...``. A name followed by "." that is
# one of these is a function, not a variable.
LIBRARY_MODULES = frozenset(
    {
        "base64",
        "events",
        "experimental",
        "googleapis",
        "hash",
        "http",
        "json",
        "list",
        "map",
        "math",
        "retry",
        "sys",
        "text",
        "time",
        "uuid",
    }
)
MAX_EXPRESSION_CHARS = 400
KEYWORDS = frozenset({"and", "or", "not", "in"})
LITERALS = frozenset({"true", "false", "null"})
JUMP_KEYWORDS = frozenset({"end"})
LOOP_JUMPS = frozenset({"break", "continue"})

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>[0-9][0-9.eE]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_ASSIGN_ROOT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class SourceProblem:
    """One rule a workflow source breaks, where, and why."""

    subworkflow: str
    step: str
    message: str

    def __str__(self) -> str:
        return f"{self.subworkflow}, step {self.step!r}: {self.message}"


def check_workflow(definition: Any) -> list[SourceProblem]:
    """Every deploy-time rule ``definition`` (a parsed source) breaks, in source order.

    ``definition`` is a map of subworkflows (``main`` and others), each with
    ``steps`` and optional ``params``, or a bare list of steps (main only).
    """
    if isinstance(definition, list):
        definition = {"main": {"steps": definition}}
    if not isinstance(definition, Mapping):
        return [SourceProblem("(source)", "-", "the source is neither a map nor a list of steps")]
    subworkflows = {str(name) for name in definition}
    problems: list[SourceProblem] = []
    for name, body in definition.items():
        problems += _SubworkflowChecker(str(name), body, subworkflows).check()
    return problems


def expression_names(text: str) -> list[str]:
    """The variable names an expression reads (``doc`` of ``doc.fields.x``), in order.

    Skips string literals, keywords, literals, function names (a name
    followed by "("), library namespaces and attribute names after ".".
    """
    tokens = [
        (match.lastgroup, match.group())
        for match in _TOKEN.finditer(text)
        if match.lastgroup != "space"
    ]
    names: list[str] = []
    for index, (kind, value) in enumerate(tokens):
        if kind != "name":
            continue
        before = tokens[index - 1][1] if index > 0 else ""
        after = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if before == "." or after == "(":
            continue
        if value in KEYWORDS or value.lower() in LITERALS:
            continue
        if value in LIBRARY_MODULES and after == ".":
            continue
        names.append(value)
    return names


def _expressions(value: Any) -> Iterator[str]:
    """Every ``${...}`` expression inside a YAML value, however deeply nested."""
    if isinstance(value, str):
        yield from _expressions_in_text(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _expressions(key)
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def _expressions_in_text(text: str) -> Iterator[str]:
    """The bodies of ``${...}`` in ``text``; braces inside string literals do not end one."""
    start = text.find("${")
    while start != -1:
        depth, index, quote = 0, start + 2, ""
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                if depth == 0:
                    break
                depth -= 1
            index += 1
        yield text[start + 2 : index]
        start = text.find("${", index + 1)


@dataclass
class _Scope:
    """Variables created in one block: a subworkflow, a for body, an except block, a branch."""

    kind: str
    step: str
    parent: _Scope | None = None
    created: set[str] = field(default_factory=set)

    def visible(self) -> set[str]:
        names: set[str] = set()
        scope: _Scope | None = self
        while scope is not None:
            names |= scope.created
            scope = scope.parent
        return names

    def inside_loop(self) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if scope.kind == "for":
                return True
            scope = scope.parent
        return False


@dataclass
class _Read:
    scope: _Scope
    step: str
    name: str


class _SubworkflowChecker:
    def __init__(self, name: str, body: Any, subworkflows: set[str]) -> None:
        self.name = name
        self.body = body
        self.subworkflows = subworkflows
        self.problems: list[SourceProblem] = []
        self.scopes: list[_Scope] = []
        self.reads: list[_Read] = []
        self.step_names: set[str] = set()
        self.jumps: list[tuple[_Scope, str, str]] = []

    def check(self) -> list[SourceProblem]:
        if not isinstance(self.body, Mapping) or not isinstance(self.body.get("steps"), list):
            return [SourceProblem(self.name, "-", "a subworkflow needs a list of steps")]
        root = self._new_scope("subworkflow", "-", None)
        for param in self.body.get("params") or []:
            root.created.add(str(next(iter(param))) if isinstance(param, Mapping) else str(param))
        self._steps(self.body["steps"], root)
        self._check_jumps()
        self._check_reads()
        return self.problems

    # -- walking the steps ------------------------------------------------

    def _new_scope(self, kind: str, step: str, parent: _Scope | None) -> _Scope:
        scope = _Scope(kind, step, parent)
        self.scopes.append(scope)
        return scope

    def _problem(self, step: str, message: str) -> None:
        self.problems.append(SourceProblem(self.name, step, message))

    def _steps(self, steps: Any, scope: _Scope) -> None:
        if not isinstance(steps, list):
            self._problem(scope.step, "steps must be a list")
            return
        for entry in steps:
            if not isinstance(entry, Mapping) or len(entry) != 1:
                self._problem(scope.step, "each step must be a map with one step name")
                continue
            name, body = next(iter(entry.items()))
            self.step_names.add(str(name))
            self._step(str(name), body, scope)

    def _step(self, step: str, body: Any, scope: _Scope) -> None:
        if not isinstance(body, Mapping):
            self._problem(step, "a step must be a map")
            return
        for assignment in body.get("assign") or []:
            self._assign(step, assignment, scope)
        if "call" in body:
            self._call(step, body, scope)
        for key in ("args", "return", "raise"):
            if key in body:
                self._read(step, body[key], scope)
        if "next" in body:
            self.jumps.append((scope, step, str(body["next"])))
        if "switch" in body:
            self._switch(step, body["switch"], scope)
        if "steps" in body:
            # A nested steps block shares its subworkflow's (or loop's) scope.
            self._steps(body["steps"], scope)
        if "for" in body:
            self._for(step, body["for"], scope)
        if "parallel" in body:
            self._parallel(step, body["parallel"], scope)
        if "try" in body:
            self._try(step, body, scope)

    def _assign(self, step: str, assignment: Any, scope: _Scope) -> None:
        if not isinstance(assignment, Mapping) or len(assignment) != 1:
            self._problem(step, "each assign entry must be a map with one variable")
            return
        target, value = next(iter(assignment.items()))
        self._read(step, value, scope)
        target = str(target)
        root = _ASSIGN_ROOT.match(target)
        if root is None:
            self._problem(step, f"cannot assign to {target!r}")
        elif root.group(1) == target.strip():
            if target.strip() not in scope.visible():
                scope.created.add(target.strip())
        else:
            # a.b or a["k"] or a[0] changes an existing variable: a read of a.
            # Names in its subscripts (a[key]) are read too; "x" stands in for a.
            for name in [root.group(1), *expression_names("x" + target[root.end() :])[1:]]:
                self.reads.append(_Read(scope, step, name))

    def _call(self, step: str, body: Mapping[str, Any], scope: _Scope) -> None:
        target = str(body["call"])
        if "." not in target and target not in self.subworkflows:
            self._problem(
                step,
                f"calls {target!r}, which is not a subworkflow of this source "
                "(nor a dotted standard library function or connector)",
            )
        if "result" in body:
            result = str(body["result"])
            if result not in scope.visible():
                scope.created.add(result)

    def _switch(self, step: str, conditions: Any, scope: _Scope) -> None:
        if not isinstance(conditions, list):
            self._problem(step, "switch must be a list of conditions")
            return
        for condition in conditions:
            if not isinstance(condition, Mapping):
                self._problem(step, "each switch entry must be a map with a condition")
                continue
            self._read(step, condition.get("condition"), scope)
            # A condition may carry what a step carries: assign, steps, next, return...
            self._step(step, {k: v for k, v in condition.items() if k != "condition"}, scope)

    def _for(self, step: str, loop: Any, scope: _Scope) -> None:
        if not isinstance(loop, Mapping):
            self._problem(step, "for must be a map")
            return
        self._read(step, loop.get("in"), scope)
        self._read(step, loop.get("range"), scope)
        body = self._new_scope("for", step, scope)
        for key in ("value", "index"):
            if key in loop:
                body.created.add(str(loop[key]))
        self._steps(loop.get("steps"), body)

    def _parallel(self, step: str, parallel: Any, scope: _Scope) -> None:
        if not isinstance(parallel, Mapping):
            self._problem(step, "parallel must be a map")
            return
        for shared in parallel.get("shared") or []:
            self.reads.append(_Read(scope, step, str(shared)))
        for branch in parallel.get("branches") or []:
            if isinstance(branch, Mapping) and len(branch) == 1:
                branch_name, branch_body = next(iter(branch.items()))
                self.step_names.add(str(branch_name))
                branch_scope = self._new_scope("branch", str(branch_name), scope)
                self._step(str(branch_name), branch_body, branch_scope)
        if "for" in parallel:
            self._for(step, parallel["for"], scope)

    def _try(self, step: str, body: Mapping[str, Any], scope: _Scope) -> None:
        attempt = body["try"]
        if isinstance(attempt, Mapping):
            # The try block runs in the enclosing scope.
            self._step(step, attempt, scope)
        retry = body.get("retry")
        if isinstance(retry, Mapping):
            predicate = retry.get("predicate")
            for name in _predicate_names(predicate):
                if name not in self.subworkflows:
                    self._problem(
                        step, f"retry predicate {name!r} is not a subworkflow of this source"
                    )
            self._read(step, {k: v for k, v in retry.items() if k != "predicate"}, scope)
        elif retry is not None and not isinstance(retry, str):
            self._problem(step, "retry must be a map or a retry policy expression")
        handler = body.get("except")
        if isinstance(handler, Mapping):
            block = self._new_scope("except", step, scope)
            if "as" in handler:
                block.created.add(str(handler["as"]))
            self._steps(handler.get("steps"), block)

    def _read(self, step: str, value: Any, scope: _Scope) -> None:
        for expression in _expressions(value):
            if len(expression) + 3 > MAX_EXPRESSION_CHARS:
                self._problem(
                    step,
                    f"an expression of {len(expression) + 3} characters is over Workflows' "
                    f"limit of {MAX_EXPRESSION_CHARS}: split it across assign steps",
                )
            for name in expression_names(expression):
                self.reads.append(_Read(scope, step, name))

    # -- the rules --------------------------------------------------------

    def _check_jumps(self) -> None:
        for scope, step, target in self.jumps:
            if target in JUMP_KEYWORDS or target in self.step_names:
                continue
            if target in LOOP_JUMPS:
                if not scope.inside_loop():
                    self._problem(step, f"next: {target} is only allowed inside a for loop")
                continue
            self._problem(
                step, f"next: {target!r} is not a step of {self.name} (nor end, break, continue)"
            )

    def _check_reads(self) -> None:
        reported: set[tuple[str, str]] = set()
        for read in self.reads:
            if read.name in read.scope.visible() or (read.step, read.name) in reported:
                continue
            reported.add((read.step, read.name))
            owners = [s for s in self.scopes if read.name in s.created]
            if owners:
                owner = owners[0]
                self._problem(
                    read.step,
                    f"reads {read.name!r}, which is created only inside the {owner.kind} "
                    f"block of step {owner.step!r} and does not exist outside it; "
                    "create it (e.g. as null) before that block",
                )
            else:
                self._problem(read.step, f"reads {read.name!r}, which nothing creates")


def _predicate_names(predicate: Any) -> list[str]:
    if not isinstance(predicate, str):
        return []
    names: list[str] = []
    for expression in _expressions_in_text(predicate):
        names += [name for name in expression_names(expression) if name not in LIBRARY_MODULES]
    return names
