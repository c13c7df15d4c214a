"""Stack configuration mistakes: each is refused before anything is created, in plain words.

The program runs under Pulumi's mocks (conftest.py), so every message here is
what `pulumi preview` would print, and no resource is registered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra.args import CallbackBridgeArgs
from infra.settings import SettingsError, build_args, stack_config_keys, unknown_key_problems

NAMESPACE = "workflow-callbacks"

NO_PROJECT = "gcp:project is not set: set it with `pulumi config set gcp:project <project-id>`"
NO_REGION = (
    "gcp:region is not set: set it with `pulumi config set gcp:region <region>`, "
    "for example europe-west1"
)


def _project_problem(project: str) -> str:
    return (
        f"gcp:project {project!r} is not a Google Cloud project id: 6 to 30 lowercase letters, "
        "digits or hyphens, starting with a letter and not ending with a hyphen (the id, not "
        "the project's display name: `gcloud projects list` shows both)"
    )


Refused = Callable[..., list[str]]


@pytest.fixture
def refused(deploy_catching) -> Refused:
    """Run the program and hand back its problems, checking that nothing was created."""

    def run(config: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        deployment, error = deploy_catching(config=config, **kwargs)
        assert isinstance(error, SettingsError), error
        assert deployment.resources == []
        return error.problems

    return run


def test_a_misspelled_key_names_the_closest_setting(refused: Refused) -> None:
    assert refused({"timeoutSecond": 3600}) == [
        f"{NAMESPACE}:timeoutSecond is not a setting of this project; did you mean "
        f"{NAMESPACE}:timeoutSeconds? (remove it with `pulumi config rm "
        f"{NAMESPACE}:timeoutSecond` and set that key instead)"
    ]


def test_a_key_in_the_wrong_case_names_the_setting(refused: Refused) -> None:
    (problem,) = refused({"FunctionMemory": "512Mi"})

    assert f"did you mean {NAMESPACE}:functionMemory?" in problem


def test_a_key_like_no_setting_points_to_the_list(refused: Refused) -> None:
    assert refused({"colour": "blue"}) == [
        f"{NAMESPACE}:colour is not a setting of this project (remove it with `pulumi config "
        f"rm {NAMESPACE}:colour`; Pulumi.yaml and docs/deploy.md list the settings)"
    ]


def test_keys_the_cli_passes_in_pulumi_config_are_checked_too(
    refused: Refused, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pulumi CLI's Python language host passes the stack config this way.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({f"{NAMESPACE}:ttlSecond": "3600"}))

    (problem,) = refused()

    assert problem.startswith(f"{NAMESPACE}:ttlSecond is not a setting of this project; did ")
    assert f"did you mean {NAMESPACE}:ttlSeconds?" in problem


def test_the_config_keys_are_read_from_both_places_the_sdk_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"gcp:project": "from-the-cli"}))
    pulumi.runtime.set_all_config({f"{NAMESPACE}:delivery": "poll"})
    try:
        assert stack_config_keys() == {"gcp:project", f"{NAMESPACE}:delivery"}
    finally:
        pulumi.runtime.set_all_config({})


def test_only_the_projects_own_namespace_is_checked() -> None:
    keys = [
        "gcp:project",
        "gcp:region",
        "pulumi:tags",
        # Another program's namespace: its keys are not ours to judge.
        "other-app:timeoutSecond",
        f"{NAMESPACE}:timeoutSeconds",
        f"{NAMESPACE}:iamPropagationSeconds",
    ]

    assert unknown_key_problems(NAMESPACE, keys) == []
    assert len(unknown_key_problems(NAMESPACE, [*keys, f"{NAMESPACE}:timeout"])) == 1


@pytest.mark.parametrize("project", ["My Project!", "Google Demo"])
def test_a_display_name_for_a_project_id_is_refused_alone(refused: Refused, project: str) -> None:
    # Alone: names derived from it (the source bucket would contain "google")
    # would only repeat the problem.
    assert refused(project=project) == [_project_problem(project)]


@pytest.mark.parametrize(
    "project",
    [
        "abcde",  # 5 characters
        "a" * 31,
        "1-project",  # starts with a digit
        "my-project-",  # ends with a hyphen
        "my_project",
        "MyProject",
        # Domain-scoped: the Resource Manager page gives no such form.
        "example.com:my-project",
    ],
)
def test_project_ids_outside_googles_rules_are_refused(project: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build_args(project, "europe-west1", "dev")

    assert raised.value.problems == [_project_problem(project)]


@pytest.mark.parametrize("project", ["abcdef", "a" * 30, "my-project-123", "a1-b2-c3"])
def test_project_ids_within_googles_rules_are_accepted(project: str) -> None:
    assert build_args(project, "europe-west1", "dev").project == project


def test_a_missing_project_says_how_to_set_it(refused: Refused) -> None:
    assert refused(project=None) == [NO_PROJECT]


def test_a_missing_region_says_how_to_set_it_and_nothing_about_firestore(
    refused: Refused,
) -> None:
    assert refused(region=None) == [NO_REGION]


def test_missing_project_and_region_are_reported_together(refused: Refused) -> None:
    assert refused(project=None, region=None) == [NO_PROJECT, NO_REGION]


@pytest.mark.parametrize("region", ["europe west1", "Europe-West1", "europe-west"])
def test_a_malformed_region_is_refused_alone(refused: Refused, region: str) -> None:
    assert refused(region=region) == [
        f"gcp:region {region!r} is not a Google Cloud region: lowercase words joined by "
        "hyphens, ending in a number, like europe-west1 or us-central1"
    ]


def test_an_explicit_firestore_location_is_still_checked_without_a_region(
    refused: Refused,
) -> None:
    problems = refused({"firestoreLocation": "Mars"}, region=None)

    assert problems[0] == NO_REGION
    assert problems[1].startswith("firestoreLocation 'Mars' is not a Firestore location")


def test_a_wait_longer_than_the_registration_lives_is_refused_at_preview(
    refused: Refused,
) -> None:
    assert refused({"timeoutSeconds": 7200, "ttlSeconds": 3600}) == [
        "ttlSeconds 3600 is shorter than timeoutSeconds 7200: Firestore's TTL could delete a "
        "registration while its workflow still waits for the callback; ttlSeconds must be at "
        "least timeoutSeconds"
    ]


def test_every_config_mistake_is_reported_at_once(refused: Refused) -> None:
    problems = refused(
        {"timeoutSecond": 60, "timeoutSeconds": 7200, "ttlSeconds": 3600},
        project="My Project!",
        region=None,
    )

    assert [problem.split(" ")[0] for problem in problems] == [
        f"{NAMESPACE}:timeoutSecond",
        "gcp:project",
        "gcp:region",
        "ttlSeconds",
    ]


def test_grants_get_two_minutes_to_take_effect_by_default() -> None:
    # Google: "typically 2 minutes, potentially 7 minutes or longer"
    # (https://cloud.google.com/iam/docs/access-change-propagation). A stack
    # that sets nothing gets this default (test_settings.py), and the wait
    # lasts iam_propagation_seconds (test_program.py).
    args = CallbackBridgeArgs(project="my-project", region="europe-west1", name="n")

    assert args.iam_propagation_seconds == 120
