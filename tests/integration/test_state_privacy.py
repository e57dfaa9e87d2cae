"""The running stack's state (data, logs, configs, secrets) is its owners' alone."""

from __future__ import annotations

import pytest

from devstack import DevStackSettings
from tests.stacks import exposed

pytestmark = pytest.mark.integration


def test_nothing_the_stack_keeps_is_readable_by_others(settings: DevStackSettings) -> None:
    assert exposed(settings.state_dir) == []
