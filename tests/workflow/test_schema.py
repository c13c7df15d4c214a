"""The YAML is valid Google Cloud Workflows syntax, alone and as deployed (concatenated)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

SCHEMA = yaml.safe_load(
    resources.files("workflows_emulator").joinpath("workflow-schema.json").read_text()
)
# The schema types a call's `timeout` argument as a literal number, but on
# Workflows every argument may be an expression (waitForResponse computes
# events.await_callback's timeout from its deadline).
SCHEMA["definitions"]["args"]["properties"]["timeout"] = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^\$\{.*\}$"}]
}
# The schema caps a subworkflow's params at 10 items. Google's own schema
# (GoogleCloudPlatform/workflows-samples, jsonschema/workflows.json) caps only
# the plain names ("contains": {"type": "string"}, "maxContains": 10): a
# parameter with a default is a one-key map and does not count. Draft 7 has
# no maxContains, so test_at_most_ten_parameters_without_a_default checks it.
MAX_PLAIN_PARAMS = SCHEMA["definitions"]["subworkflow"]["properties"]["params"].pop("maxItems")


@pytest.fixture(scope="module")
def sources(repo_root) -> dict[str, str]:
    folder = repo_root / "workflow"
    return {name: (folder / name).read_text() for name in ("callbacks.yaml", "example.yaml")}


def steps_of(node: Any) -> list[dict[str, Any]]:
    """Every step body in a workflow, nested ones included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "steps" and isinstance(value, list):
                found += [
                    body for step in value for body in step.values() if isinstance(body, dict)
                ]
            found += steps_of(value)
    elif isinstance(node, list):
        for item in node:
            found += steps_of(item)
    return found


# The smallest main, to check callbacks.yaml on its own (a workflow needs a main).
STUB_MAIN = "main:\n  steps:\n    - done:\n        return: 1\n"


def test_the_example_matches_the_workflows_schema(sources):
    jsonschema.validate(yaml.safe_load(sources["example.yaml"]), SCHEMA)


def test_the_subworkflows_match_the_workflows_schema(sources):
    jsonschema.validate(yaml.safe_load(STUB_MAIN + sources["callbacks.yaml"]), SCHEMA)


def test_the_deployed_concatenation_is_valid_and_has_no_clashing_names(sources):
    example = yaml.safe_load(sources["example.yaml"])
    callbacks = yaml.safe_load(sources["callbacks.yaml"])
    deployed = yaml.safe_load(sources["example.yaml"] + "\n" + sources["callbacks.yaml"])

    jsonschema.validate(deployed, SCHEMA)
    assert set(example) == {"main"}
    assert set(callbacks) == {
        "getCallbackURL",
        "waitForResponse",
        "callbacksRetryableError",
        "getApprovalURLs",
        "waitForApprovals",
    }
    assert set(deployed) == {"main", *callbacks}


def test_the_schema_check_rejects_an_invalid_workflow():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"main": {"steps": [{"s": {"call": 3}}]}}, SCHEMA)


def test_no_step_combines_try_and_next(sources):
    # workflows-emulator ignores `next:` on a step with `try:`; the YAML must
    # not depend on it.
    for name, text in sources.items():
        for step in steps_of(yaml.safe_load(text)):
            assert not ("try" in step and "next" in step), f"{name}: {step}"


def test_at_most_ten_parameters_without_a_default(sources):
    for name, body in yaml.safe_load(sources["callbacks.yaml"]).items():
        plain = [param for param in body.get("params") or [] if isinstance(param, str)]
        assert len(plain) <= MAX_PLAIN_PARAMS == 10, name
