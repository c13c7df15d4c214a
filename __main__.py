"""Deploy the callback system for the current stack: settings, one component, outputs."""

import pulumi

from infra import CallbackBridge
from infra.settings import load_args

bridge = CallbackBridge("callbacks", load_args())

for output, value in bridge.outputs().items():
    pulumi.export(output, value)
