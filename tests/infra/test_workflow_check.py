"""Workflows' deploy-time rules that workflows-emulator does not enforce (infra.workflow_check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.args import WorkflowSourceError, compose_workflow_source
from infra.workflow_check import check_workflow, expression_names

REPO_ROOT = Path(__file__).resolve().parents[2]
CALLBACKS = REPO_ROOT / "workflow" / "callbacks.yaml"
# Every workflow file the project ships or runs: each must pass on its own
# terms, and each user workflow joined with callbacks.yaml as deployed.
USER_WORKFLOWS = [REPO_ROOT / "workflow" / "example.yaml", REPO_ROOT / "bench/wait/driver.yaml"]


def problems_of(source: str) -> list[str]:
    return [str(problem) for problem in check_workflow(yaml.safe_load(source))]


def test_the_shipped_subworkflows_pass() -> None:
    assert problems_of(CALLBACKS.read_text()) == []


@pytest.mark.parametrize("path", USER_WORKFLOWS, ids=lambda path: path.name)
def test_every_shipped_workflow_passes_as_deployed(path: Path) -> None:
    combined = compose_workflow_source(path.read_text(), CALLBACKS.read_text())

    assert problems_of(combined) == []


# --- variable scope -------------------------------------------------------------
# The shape callbacks.yaml had before it was fixed: deleteError first created
# in an except block, read in a later step.
EXCEPT_SCOPE = """
main:
  steps:
    - attempt:
        try:
          call: http.get
          args: {url: "https://example.com"}
        except:
          as: e
          steps:
            - keep:
                assign:
                  - failure: ${e}
    - report:
        return: ${failure}
"""

FOR_SCOPE = """
main:
  steps:
    - init:
        assign:
          - total: 0
    - loop:
        for:
          value: item
          in: [1, 2]
          steps:
            - add:
                assign:
                  - total: ${total + item}
                  - last: ${item}
    - done:
        return: ${[total, last, item]}
"""

BRANCH_SCOPE = """
main:
  steps:
    - fanOut:
        parallel:
          branches:
            - left:
                steps:
                  - compute:
                      assign:
                        - leftResult: 1
    - done:
        return: ${leftResult}
"""


def test_a_variable_created_in_an_except_block_and_read_after_it_is_refused() -> None:
    assert problems_of(EXCEPT_SCOPE) == [
        "main/report: reads 'failure', which exists only inside the except block of "
        "main/attempt. Fix: create it before that block (assign failure: null in an earlier "
        "step)"
    ]


def test_the_same_variable_declared_before_the_block_passes() -> None:
    declared = EXCEPT_SCOPE.replace(
        "  steps:\n    - attempt:",
        "  steps:\n    - init:\n        assign:\n          - failure: null\n    - attempt:",
        1,
    )

    assert problems_of(declared) == []


def test_loop_variables_and_variables_created_in_a_loop_do_not_exist_after_it() -> None:
    problems = problems_of(FOR_SCOPE)

    # total exists before the loop, so the loop updates it; last and item are the loop's.
    assert [problem.split(":")[0] for problem in problems] == ["main/done", "main/done"]
    assert "'last'" in problems[0] and "for block of main/loop." in problems[0]
    assert "'item'" in problems[1]


def test_a_variable_created_in_a_parallel_branch_is_local_to_it() -> None:
    (problem,) = problems_of(BRANCH_SCOPE)

    assert problem.startswith("main/done: reads 'leftResult'")
    assert "branch block of main/fanOut/left." in problem


def test_a_variable_nothing_creates_is_refused() -> None:
    source = "main:\n  steps:\n    - done:\n        return: ${undeclared + 1}\n"

    assert problems_of(source) == [
        "main/done: reads 'undeclared', which nothing creates. "
        "Fix: assign it in an earlier step or take it as a parameter"
    ]


def test_params_results_try_bodies_and_nested_steps_share_the_subworkflow_scope() -> None:
    source = """
main:
  params: [input]
  steps:
    - outer:
        steps:
          - fetch:
              try:
                call: http.get
                args: {url: "${input.url}"}
                result: response
              except:
                as: e
                steps:
                  - again:
                      raise: ${e}
          - pick:
              switch:
                - condition: ${response.code == 200}
                  assign:
                    - picked: ${response.body["items"][0]}
    - done:
        return: ${picked}
"""
    assert problems_of(source) == []


# --- calls ----------------------------------------------------------------------
def test_a_call_to_an_undefined_subworkflow_is_refused() -> None:
    source = """
main:
  steps:
    - first:
        call: getCallbackUrl
        args: {step: approval}
        result: url
    - done:
        return: ${url}
"""
    assert problems_of(source) == [
        "main/first: calls 'getCallbackUrl', which is not a subworkflow of this source "
        "(nor a dotted standard library function or connector). "
        "Fix: define a subworkflow getCallbackUrl, or call a dotted function (http.get)"
    ]
    # With the callback subworkflows appended, as deployed, the fix names the right one.
    (problem,) = problems_of(source + "\n" + CALLBACKS.read_text())
    assert problem.endswith(". Fix: did you mean 'getCallbackURL'?")


def test_a_retry_predicate_must_be_a_defined_subworkflow() -> None:
    source = """
main:
  steps:
    - fetch:
        try:
          call: http.get
          args: {url: "https://example.com"}
        retry:
          predicate: ${isRetryable}
          max_retries: 3
          backoff: {initial_delay: 1, max_delay: 10, multiplier: 2}
"""
    (problem,) = problems_of(source)
    assert "retry predicate 'isRetryable' is not a subworkflow" in problem
    defined = source + "isRetryable:\n  params: [e]\n  steps:\n    - r:\n        return: true\n"
    assert problems_of(defined) == []
    builtin = source.replace("${isRetryable}", "${http.default_retry_predicate}")
    assert problems_of(builtin) == []


# --- jumps ----------------------------------------------------------------------
def test_a_jump_to_a_step_that_does_not_exist_is_refused() -> None:
    source = """
main:
  steps:
    - check:
        switch:
          - condition: ${1 > 0}
            next: aproved
        next: end
    - approved:
        return: ok
"""
    assert problems_of(source) == [
        "main/check: next: 'aproved' is not a step of main (nor end, break, continue). "
        "Fix: did you mean 'approved'?"
    ]


def test_break_and_continue_only_inside_a_loop() -> None:
    inside = """
main:
  steps:
    - loop:
        for:
          value: v
          in: [1]
          steps:
            - stop:
                next: break
"""
    outside = "main:\n  steps:\n    - stop:\n        next: continue\n"

    assert problems_of(inside) == []
    assert problems_of(outside) == [
        "main/stop: next: continue is only allowed inside a for loop. "
        "Fix: jump to a step by name, or end"
    ]


# --- where the check runs ------------------------------------------------------------
def test_composing_a_source_runs_the_check_with_the_step_and_the_reason() -> None:
    with pytest.raises(WorkflowSourceError) as raised:
        compose_workflow_source(EXCEPT_SCOPE, CALLBACKS.read_text())

    assert "Workflows would refuse this source at deploy time" in str(raised.value)
    assert "\n  - main/report: reads 'failure'" in str(raised.value)


def test_expression_names_skip_strings_functions_and_attributes() -> None:
    expression = '"}${x}" + doc.fields.state + map.get(e, "k") + len(items) + a[b] and not True'

    assert expression_names(expression) == ["doc", "e", "items", "a", "b"]


def test_an_expression_over_400_characters_is_refused() -> None:
    long_sum = " + ".join(["x"] * 100)  # 397 characters, 400 with ${ and }
    fits = f"main:\n  params: [x]\n  steps:\n    - s:\n        return: ${{{long_sum}}}\n"
    over = fits.replace("${x + ", "${x + x + ")

    assert problems_of(fits) == []
    assert problems_of(over) == [
        "main/s: an expression of 404 characters is over Workflows' limit of 400. "
        "Fix: split it across assign steps"
    ]


@pytest.mark.parametrize("where", ["step", "switch condition"])
def test_an_assign_of_more_than_50_entries_is_refused(where: str) -> None:
    def source(count: int) -> str:
        entries = "".join(f"\n          - v{n}: {n}" for n in range(count))
        if where == "step":
            return f"main:\n  steps:\n    - s:\n        assign:{entries}\n"
        entries = entries.replace("\n          ", "\n              ")
        return (
            "main:\n  steps:\n    - s:\n        switch:\n          - condition: true\n"
            f"            assign:{entries}\n"
        )

    assert problems_of(source(50)) == []
    assert problems_of(source(51)) == [
        "main/s: an assign of 51 entries is over Workflows' limit of 50. "
        "Fix: split it across assign steps"
    ]


# --- how a problem reads ---------------------------------------------------------------
SEVERAL = """
main:
  steps:
    - outer:
        steps:
          - fetch:
              try:
                call: http.get
                args: {url: "${adress}"}
                result: response
              except:
                as: e
                steps:
                  - retryLater:
                      call: waitABit
          - pick:
              next: finish
    - loop:
        for:
          value: item
          in: [1]
          steps:
            - use:
                return: ${item + missing}
    - done:
        return: ${response}
helper:
  params: [address]
  steps:
    - r:
        return: ${adress}
"""


def test_each_problem_is_one_line_where_then_what_then_the_fix_in_source_order() -> None:
    problems = problems_of(SEVERAL)

    assert [problem.split(": ", 1)[0] for problem in problems] == [
        "main/outer/fetch",  # adress
        "main/outer/fetch/retryLater",  # waitABit
        "main/outer/pick",  # finish
        "main/loop/use",  # missing
        "helper/r",  # adress, with address in scope
    ]
    for problem in problems:
        assert "\n" not in problem
        what, fix = problem.split(". Fix: ")
        assert what and fix
    assert problems[1].startswith("main/outer/fetch/retryLater: calls 'waitABit'")
    assert problems[2].endswith("Fix: name a step of main, or end")
    assert problems[4] == (
        "helper/r: reads 'adress', which nothing creates. Fix: did you mean 'address'?"
    )


CASE_TWINS = """
other:
  steps:
    - first:
        call: twn
Twin:
  steps:
    - r:
        return: 1
twin:
  steps:
    - r:
        return: 2
"""


def test_the_list_is_the_same_in_every_process() -> None:
    # Sets of names iterate in an order that changes with the hash seed; the
    # suggestions and the order of the problems must not.
    script = (
        "import sys, yaml; from infra.workflow_check import check_workflow; "
        "print([str(p) for p in check_workflow(yaml.safe_load(sys.stdin.read()))])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=SEVERAL + CASE_TWINS,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(6)
    }

    assert len(outputs) == 1
    (output,) = outputs
    assert "helper/r: reads 'adress'" in output
    assert "other/first: calls 'twn'" in output
