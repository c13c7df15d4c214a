"""One source for the protocol's constants: function/contract.py.

The receiver and the Pulumi program import it; workflow/callbacks.yaml cannot,
so this test pins the YAML's literals to it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infra import function_contract
from infra.args import CallbackBridgeArgs
from infra.function_modules import function_module
from infra.workflow_env import WaitSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTRACT = vars(function_module("contract"))


def settings_of(subworkflow: str) -> dict[str, str]:
    source = yaml.safe_load((REPO_ROOT / "workflow" / "callbacks.yaml").read_text())
    # The first step of each subworkflow assigns its settings (whatever its name).
    (first,) = source[subworkflow]["steps"][0].values()
    return {name: value for entry in first["assign"] for name, value in entry.items()}


def env_default(expression: str, variable: str) -> str:
    match = re.search(rf'sys\.get_env\("{variable}", "([^"]*)"\)', expression)
    assert match, expression
    return match.group(1)


def test_both_subworkflows_use_the_contracts_id_patterns_and_defaults() -> None:
    for subworkflow in ("getCallbackURL", "waitForResponse", "getApprovalURLs", "waitForApprovals"):
        settings = settings_of(subworkflow)
        assert settings["runIdPattern"] == f"^{CONTRACT['RUN_ID_PATTERN']}$", subworkflow
        assert settings["stepPattern"] == f"^{CONTRACT['STEP_PATTERN']}$", subworkflow
        # waitForResponse folds the collection into the document path it reads.
        collection = settings.get("collection") or settings["documentPath"]
        assert env_default(collection, "CALLBACKS_COLLECTION") == CONTRACT["DEFAULT_COLLECTION"]
    assert env_default(settings_of("getCallbackURL")["ttlSeconds"], "CALLBACKS_TTL_SECONDS") == (
        str(CONTRACT["DEFAULT_TTL_SECONDS"])
    )
    for wait in ("waitForResponse", "waitForApprovals"):
        assert env_default(settings_of(wait)["ttl"], "CALLBACKS_TTL_SECONDS") == (
            str(CONTRACT["DEFAULT_TTL_SECONDS"])
        )
    assert env_default(settings_of("getApprovalURLs")["ttlSeconds"], "CALLBACKS_TTL_SECONDS") == (
        str(CONTRACT["DEFAULT_TTL_SECONDS"])
    )


def test_the_pulumi_program_takes_its_defaults_from_the_contract() -> None:
    args = CallbackBridgeArgs(project="p", region="europe-west1", name="n")

    assert CONTRACT["RUN_ID_PATTERN"] == function_contract.RUN_ID_PATTERN
    assert args.callbacks_collection == CONTRACT["DEFAULT_COLLECTION"]
    assert args.max_body_bytes == CONTRACT["DEFAULT_MAX_BODY_BYTES"]
    assert WaitSettings().ttl_seconds == CONTRACT["DEFAULT_TTL_SECONDS"]


def test_the_receiver_takes_its_patterns_and_defaults_from_the_contract() -> None:
    request = function_module("callback_request")
    config = function_module("receiver_config").ReceiverConfig()

    assert request.RUN_ID_PATTERN.pattern == CONTRACT["RUN_ID_PATTERN"]
    assert request.STEP_PATTERN.pattern == CONTRACT["STEP_PATTERN"]
    assert (config.collection, config.ttl_seconds, config.max_body_bytes) == (
        CONTRACT["DEFAULT_COLLECTION"],
        CONTRACT["DEFAULT_TTL_SECONDS"],
        CONTRACT["DEFAULT_MAX_BODY_BYTES"],
    )


def test_the_entry_point_the_deployment_names_is_the_receivers_function() -> None:
    main = function_module("main")

    assert function_contract.ENTRY_POINT == CONTRACT["ENTRY_POINT"] == "processEntry"
    assert callable(getattr(main, CONTRACT["ENTRY_POINT"]))
