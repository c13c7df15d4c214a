"""The environment the callback subworkflows read, in one place.

Both the Pulumi component (as the deployed workflow's ``user_env_vars``) and
the local stack (as the emulated workflow's process environment) build the
workflow environment here, so the two can never drift apart. Kept free of
Pulumi imports so the local runner can use it without a Pulumi engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.function_contract import DEFAULT_COLLECTION, DEFAULT_TTL_SECONDS

# Names the subworkflows in workflow/callbacks.yaml read with sys.get_env.
ENV_BASE_URL = "CALLBACK_BASE_URL"
ENV_DATABASE = "CALLBACKS_DATABASE"
ENV_COLLECTION = "CALLBACKS_COLLECTION"
ENV_POLL_INITIAL = "CALLBACKS_POLL_INITIAL_SECONDS"
ENV_POLL_MULTIPLIER = "CALLBACKS_POLL_MULTIPLIER"
ENV_POLL_MAX = "CALLBACKS_POLL_MAX_SECONDS"
ENV_TIMEOUT = "CALLBACKS_TIMEOUT_SECONDS"
ENV_TTL = "CALLBACKS_TTL_SECONDS"
ENV_DELIVERY = "CALLBACKS_DELIVERY"
ENV_PUSH_SLICE = "CALLBACKS_PUSH_SLICE_SECONDS"

DELIVERIES = ("push", "poll")

DEFAULT_DATABASE = "(default)"

# Workflows ends an execution after this many steps (Workflows quotas and
# limits, "Steps per execution"). waitForResponse polls in a loop of at most
# STEPS_PER_POLL steps (poll, the except step while no document exists,
# check, backoff, sleep; 4 once a registration exists) and refuses settings
# whose polling could need more than WAIT_STEP_BUDGET, leaving the rest for
# the workflow around it. workflow/callbacks.yaml holds the same numbers
# (maxWaitSteps, stepsPerPoll); a test keeps them equal.
MAX_STEPS_PER_EXECUTION = 100_000
WAIT_STEP_BUDGET = 90_000
STEPS_PER_POLL = 5


@dataclass(frozen=True)
class WaitSettings:
    """How the subworkflows poll for a callback, and how long they keep it.

    The shipped defaults are chosen from bench/wait (see bench/RESULTS.md):
    the first interval bounds the resume delay of short waits, the cap bounds
    it for long waits, and the multiplier sets how fast polling (billed per
    step) thins out in between.
    """

    poll_initial_seconds: float = 2.0
    poll_multiplier: float = 2.0
    poll_max_seconds: float = 60.0
    timeout_seconds: int = 86_400
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    # push: the receiver forwards each callback to the execution's own
    # Workflows callback endpoint and the wait resumes at once, reading
    # Firestore once per slice; poll: the wait reads Firestore with backoff.
    delivery: str = "push"
    push_slice_seconds: int = 3_600

    def validate(self) -> list[str]:
        """Every problem with these settings, as messages a user can act on."""
        problems: list[str] = []
        if self.poll_initial_seconds <= 0:
            problems.append("pollInitialSeconds must be greater than 0")
        if self.poll_multiplier < 1:
            problems.append("pollMultiplier must be at least 1")
        if self.poll_max_seconds < self.poll_initial_seconds:
            problems.append("pollMaxSeconds must not be below pollInitialSeconds")
        if self.timeout_seconds <= 0:
            problems.append("timeoutSeconds must be greater than 0")
        if self.delivery not in DELIVERIES:
            problems.append(f"delivery {self.delivery!r} is not one of: {', '.join(DELIVERIES)}")
        if self.push_slice_seconds <= 0:
            problems.append("pushSliceSeconds must be greater than 0")
        if self.ttl_seconds < self.timeout_seconds:
            problems.append(
                f"ttlSeconds {_number(self.ttl_seconds)} is shorter than timeoutSeconds "
                f"{_number(self.timeout_seconds)}: Firestore's TTL could delete a registration "
                "while its workflow still waits for the callback; ttlSeconds must be at least "
                "timeoutSeconds"
            )
        if not problems and self.poll_steps() > WAIT_STEP_BUDGET:
            problems.append(
                f"timeoutSeconds {_number(self.timeout_seconds)} with pollInitialSeconds "
                f"{_number(self.poll_initial_seconds)}, pollMultiplier "
                f"{_number(self.poll_multiplier)} and pollMaxSeconds "
                f"{_number(self.poll_max_seconds)} polls more than "
                f"{WAIT_STEP_BUDGET // STEPS_PER_POLL} times (up to {STEPS_PER_POLL} steps "
                "each): "
                f"Workflows stops an execution after {MAX_STEPS_PER_EXECUTION} steps and a "
                f"wait may use at most {WAIT_STEP_BUDGET}; {self._fewer_polls_advice()}"
            )
        return problems

    def poll_steps(self) -> int:
        """Workflow steps the polling loop may run in a wait that times out (callbacks.yaml).

        Counts past WAIT_STEP_BUDGET stop early: the answer is then only "too many".
        """
        polls, waited, interval = 1, 0.0, self.poll_initial_seconds
        while waited < self.timeout_seconds and polls * STEPS_PER_POLL <= WAIT_STEP_BUDGET:
            waited += min(interval, self.timeout_seconds - waited)
            interval = min(interval * self.poll_multiplier, self.poll_max_seconds)
            polls += 1
        return polls * STEPS_PER_POLL

    def _fewer_polls_advice(self) -> str:
        # The smallest whole-second steady interval whose polling fits the budget.
        interval = _number(math.ceil(self.timeout_seconds * STEPS_PER_POLL / WAIT_STEP_BUDGET))
        if self.poll_multiplier == 1:
            # The interval never grows, so pollMaxSeconds is never reached.
            return f"raise pollInitialSeconds to at least {interval} or lower timeoutSeconds"
        return f"raise pollMaxSeconds to at least {interval} or lower timeoutSeconds"


def workflow_env_vars(
    base_url: str,
    database: str = DEFAULT_DATABASE,
    collection: str = DEFAULT_COLLECTION,
    wait: WaitSettings | None = None,
) -> dict[str, str]:
    """The workflow's environment; Workflows env values are always strings."""
    wait = wait or WaitSettings()
    return {
        ENV_BASE_URL: base_url,
        ENV_DATABASE: database,
        ENV_COLLECTION: collection,
        ENV_POLL_INITIAL: _number(wait.poll_initial_seconds),
        ENV_POLL_MULTIPLIER: _number(wait.poll_multiplier),
        ENV_POLL_MAX: _number(wait.poll_max_seconds),
        ENV_TIMEOUT: _number(wait.timeout_seconds),
        ENV_TTL: _number(wait.ttl_seconds),
        ENV_DELIVERY: wait.delivery,
        ENV_PUSH_SLICE: _number(wait.push_slice_seconds),
    }


def _number(value: float) -> str:
    """Render 2.0 as "2" so the YAML's double() and int() both parse it."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
