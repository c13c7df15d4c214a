"""Deploy-time rules of Google Cloud Workflows that workflows-emulator does not check.

Workflows validates a source when it is deployed; workflows-emulator runs
whatever it is given and fails, if at all, only when the bad step runs (a
call to a missing subworkflow surfaces as a confusing ``SyntaxError``). This
module applies the rules that matter for this project to a parsed source,
so the tests, ``python -m local run`` and ``pulumi up`` refuse a source that
Workflows would refuse. Each problem is one line: where it is (the
subworkflow and the path of steps to it, ``main/attempt/keep``), what is
wrong, and how to fix it; the list is in source order, the same every time.

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
  ``${...}`` (Workflows quotas and limits, "Expression length");
- **assignments per step**: at most MAX_ASSIGNMENTS entries in one ``assign``
  (a step's or a switch condition's; Workflows syntax, "Variables":
  https://cloud.google.com/workflows/docs/reference/syntax/variables).

Not checked: a parallel branch writing a parent variable it does not list
in ``shared``, types, argument names of calls, the standard library's
function names, expression syntax beyond finding variable names, and
anything only an execution shows (a connector's errors, a missing key).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
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
MAX_ASSIGNMENTS = 50
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
    """One rule a workflow source breaks: where, what, and the fix.

    ``path`` is the steps from the subworkflow down to the one at fault
    (empty for the subworkflow itself).
    """

    subworkflow: str
    path: tuple[str, ...]
    message: str
    fix: str

    @property
    def where(self) -> str:
        return "/".join((self.subworkflow, *self.path))

    @property
    def step(self) -> str:
        return self.path[-1] if self.path else "-"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}. Fix: {self.fix}"


def check_workflow(definition: Any) -> list[SourceProblem]:
    """Every deploy-time rule ``definition`` (a parsed source) breaks, in source order.

    ``definition`` is a map of subworkflows (``main`` and others), each with
    ``steps`` and optional ``params``, or a bare list of steps (main only).
    """
    if isinstance(definition, list):
        definition = {"main": {"steps": definition}}
    if not isinstance(definition, Mapping):
        return [
            SourceProblem(
                "(source)",
                (),
                "the source is neither a map nor a list of steps",
                "write a map of subworkflows, each with its steps (main: {steps: [...]})",
            )
        ]
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


Path = tuple[str, ...]  # step names from the subworkflow down


@dataclass
class _Scope:
    """Variables created in one block: a subworkflow, a for body, an except block, a branch."""

    kind: str
    path: Path
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
    path: Path
    name: str


class _SubworkflowChecker:
    def __init__(self, name: str, body: Any, subworkflows: set[str]) -> None:
        self.name = name
        self.body = body
        self.subworkflows = subworkflows
        # (position of the step in the walk, problem): sorted into source order.
        self.problems: list[tuple[int, SourceProblem]] = []
        self.positions: dict[Path, int] = {}
        self.scopes: list[_Scope] = []
        self.reads: list[_Read] = []
        self.step_names: set[str] = set()
        self.jumps: list[tuple[_Scope, Path, str]] = []

    def check(self) -> list[SourceProblem]:
        if not isinstance(self.body, Mapping) or not isinstance(self.body.get("steps"), list):
            self._problem((), "a subworkflow needs a list of steps", "give it steps: [...]")
        else:
            root = self._new_scope("subworkflow", (), None)
            for param in self.body.get("params") or []:
                name = next(iter(param)) if isinstance(param, Mapping) else param
                root.created.add(str(name))
            self._steps(self.body["steps"], root, ())
            self._check_jumps()
            self._check_reads()
        # Stable: problems of one step keep the order they were found in.
        return [problem for _, problem in sorted(self.problems, key=lambda found: found[0])]

    # -- walking the steps ------------------------------------------------

    def _new_scope(self, kind: str, path: Path, parent: _Scope | None) -> _Scope:
        scope = _Scope(kind, path, parent)
        self.scopes.append(scope)
        return scope

    def _problem(self, path: Path, message: str, fix: str) -> None:
        position = self.positions.get(path, -1)
        self.problems.append((position, SourceProblem(self.name, path, message, fix)))

    def _steps(self, steps: Any, scope: _Scope, path: Path) -> None:
        if not isinstance(steps, list):
            self._problem(path, "steps must be a list", "write steps as a list: - name: {...}")
            return
        for entry in steps:
            if not isinstance(entry, Mapping) or len(entry) != 1:
                self._problem(
                    path,
                    "each step must be a map with one step name",
                    "write each step as - name: {...}",
                )
                continue
            name, body = next(iter(entry.items()))
            self.step_names.add(str(name))
            step_path = (*path, str(name))
            self.positions.setdefault(step_path, len(self.positions))
            self._step(step_path, body, scope)

    def _step(self, path: Path, body: Any, scope: _Scope) -> None:
        if not isinstance(body, Mapping):
            self._problem(path, "a step must be a map", "give it a map: call, assign, return...")
            return
        assignments = body.get("assign") or []
        if isinstance(assignments, list) and len(assignments) > MAX_ASSIGNMENTS:
            self._problem(
                path,
                f"an assign of {len(assignments)} entries is over Workflows' limit of "
                f"{MAX_ASSIGNMENTS}",
                "split it across assign steps",
            )
        for assignment in assignments:
            self._assign(path, assignment, scope)
        if "call" in body:
            self._call(path, body, scope)
        for key in ("args", "return", "raise"):
            if key in body:
                self._read(path, body[key], scope)
        if "next" in body:
            self.jumps.append((scope, path, str(body["next"])))
        if "switch" in body:
            self._switch(path, body["switch"], scope)
        if "steps" in body:
            # A nested steps block shares its subworkflow's (or loop's) scope.
            self._steps(body["steps"], scope, path)
        if "for" in body:
            self._for(path, body["for"], scope)
        if "parallel" in body:
            self._parallel(path, body["parallel"], scope)
        if "try" in body:
            self._try(path, body, scope)

    def _assign(self, path: Path, assignment: Any, scope: _Scope) -> None:
        if not isinstance(assignment, Mapping) or len(assignment) != 1:
            self._problem(
                path,
                "each assign entry must be a map with one variable",
                "write each entry as - name: value",
            )
            return
        target, value = next(iter(assignment.items()))
        self._read(path, value, scope)
        target = str(target)
        root = _ASSIGN_ROOT.match(target)
        if root is None:
            self._problem(
                path,
                f"cannot assign to {target!r}",
                'assign to a variable name, a key (a.b, a["k"]) or an index (a[0])',
            )
        elif root.group(1) == target.strip():
            if target.strip() not in scope.visible():
                scope.created.add(target.strip())
        else:
            # a.b or a["k"] or a[0] changes an existing variable: a read of a.
            # Names in its subscripts (a[key]) are read too; "x" stands in for a.
            for name in [root.group(1), *expression_names("x" + target[root.end() :])[1:]]:
                self.reads.append(_Read(scope, path, name))

    def _call(self, path: Path, body: Mapping[str, Any], scope: _Scope) -> None:
        target = str(body["call"])
        if "." not in target and target not in self.subworkflows:
            self._problem(
                path,
                f"calls {target!r}, which is not a subworkflow of this source "
                "(nor a dotted standard library function or connector)",
                _did_you_mean(target, self.subworkflows)
                or f"define a subworkflow {target}, or call a dotted function (http.get)",
            )
        if "result" in body:
            result = str(body["result"])
            if result not in scope.visible():
                scope.created.add(result)

    def _switch(self, path: Path, conditions: Any, scope: _Scope) -> None:
        if not isinstance(conditions, list):
            self._problem(
                path, "switch must be a list of conditions", "write - condition: ${...} entries"
            )
            return
        for condition in conditions:
            if not isinstance(condition, Mapping):
                self._problem(
                    path,
                    "each switch entry must be a map with a condition",
                    "write - condition: ${...} with next, steps, assign or return",
                )
                continue
            self._read(path, condition.get("condition"), scope)
            # A condition may carry what a step carries: assign, steps, next, return...
            self._step(path, {k: v for k, v in condition.items() if k != "condition"}, scope)

    def _for(self, path: Path, loop: Any, scope: _Scope) -> None:
        if not isinstance(loop, Mapping):
            self._problem(path, "for must be a map", "give it value, in (or range) and steps")
            return
        self._read(path, loop.get("in"), scope)
        self._read(path, loop.get("range"), scope)
        body = self._new_scope("for", path, scope)
        for key in ("value", "index"):
            if key in loop:
                body.created.add(str(loop[key]))
        self._steps(loop.get("steps"), body, path)

    def _parallel(self, path: Path, parallel: Any, scope: _Scope) -> None:
        if not isinstance(parallel, Mapping):
            self._problem(path, "parallel must be a map", "give it branches or for")
            return
        for shared in parallel.get("shared") or []:
            self.reads.append(_Read(scope, path, str(shared)))
        for branch in parallel.get("branches") or []:
            if isinstance(branch, Mapping) and len(branch) == 1:
                branch_name, branch_body = next(iter(branch.items()))
                self.step_names.add(str(branch_name))
                branch_path = (*path, str(branch_name))
                self.positions.setdefault(branch_path, len(self.positions))
                branch_scope = self._new_scope("branch", branch_path, scope)
                self._step(branch_path, branch_body, branch_scope)
        if "for" in parallel:
            self._for(path, parallel["for"], scope)

    def _try(self, path: Path, body: Mapping[str, Any], scope: _Scope) -> None:
        attempt = body["try"]
        if isinstance(attempt, Mapping):
            # The try block runs in the enclosing scope.
            self._step(path, attempt, scope)
        retry = body.get("retry")
        if isinstance(retry, Mapping):
            predicate = retry.get("predicate")
            for name in _predicate_names(predicate):
                if name not in self.subworkflows:
                    self._problem(
                        path,
                        f"retry predicate {name!r} is not a subworkflow of this source",
                        _did_you_mean(name, self.subworkflows)
                        or f"define a subworkflow {name} with one parameter that returns "
                        "true or false, or use http.default_retry_predicate",
                    )
            self._read(path, {k: v for k, v in retry.items() if k != "predicate"}, scope)
        elif retry is not None and not isinstance(retry, str):
            self._problem(
                path,
                "retry must be a map or a retry policy expression",
                "give it predicate, max_retries and backoff, or ${http.default_retry}",
            )
        handler = body.get("except")
        if isinstance(handler, Mapping):
            block = self._new_scope("except", path, scope)
            if "as" in handler:
                block.created.add(str(handler["as"]))
            self._steps(handler.get("steps"), block, path)

    def _read(self, path: Path, value: Any, scope: _Scope) -> None:
        for expression in _expressions(value):
            if len(expression) + 3 > MAX_EXPRESSION_CHARS:
                self._problem(
                    path,
                    f"an expression of {len(expression) + 3} characters is over Workflows' "
                    f"limit of {MAX_EXPRESSION_CHARS}",
                    "split it across assign steps",
                )
            for name in expression_names(expression):
                self.reads.append(_Read(scope, path, name))

    # -- the rules --------------------------------------------------------

    def _check_jumps(self) -> None:
        for scope, path, target in self.jumps:
            if target in JUMP_KEYWORDS or target in self.step_names:
                continue
            if target in LOOP_JUMPS:
                if not scope.inside_loop():
                    self._problem(
                        path,
                        f"next: {target} is only allowed inside a for loop",
                        "jump to a step by name, or end",
                    )
                continue
            self._problem(
                path,
                f"next: {target!r} is not a step of {self.name} (nor end, break, continue)",
                _did_you_mean(target, self.step_names) or f"name a step of {self.name}, or end",
            )

    def _check_reads(self) -> None:
        reported: set[tuple[Path, str]] = set()
        for read in self.reads:
            if read.name in read.scope.visible() or (read.path, read.name) in reported:
                continue
            reported.add((read.path, read.name))
            owners = [s for s in self.scopes if read.name in s.created]
            if owners:
                owner = owners[0]
                self._problem(
                    read.path,
                    f"reads {read.name!r}, which exists only inside the {owner.kind} block "
                    f"of {'/'.join((self.name, *owner.path))}",
                    f"create it before that block (assign {read.name}: null in an earlier step)",
                )
            else:
                self._problem(
                    read.path,
                    f"reads {read.name!r}, which nothing creates",
                    _did_you_mean(read.name, read.scope.visible())
                    or "assign it in an earlier step or take it as a parameter",
                )


def _did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """'did you mean 'x'?' for the closest candidate (case-insensitive), or None."""
    by_lower = {candidate.lower(): candidate for candidate in sorted(candidates)}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    return f"did you mean {by_lower[close[0]]!r}?" if close else None


def _predicate_names(predicate: Any) -> list[str]:
    if not isinstance(predicate, str):
        return []
    names: list[str] = []
    for expression in _expressions_in_text(predicate):
        names += [name for name in expression_names(expression) if name not in LIBRARY_MODULES]
    return names
