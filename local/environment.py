"""Set environment variables for the length of a block, and put back what was there."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ while the block runs; afterwards each name is as before.

    A name that was unset is removed again, whatever the block did with it.
    The environment is process-wide: callers that run blocks concurrently
    must serialise them.
    """
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
