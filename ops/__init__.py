"""ops: commands for a deployed (or local) workflow-callbacks stack.

    python -m ops verify --stack dev      # a real callback round trip
    python -m ops verify --local          # the same against python -m local's stack

Kept apart from infra/ (which only `pulumi up` runs) and from function/
(which is deployed): this is the operator's tool.
"""
