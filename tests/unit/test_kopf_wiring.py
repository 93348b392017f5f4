"""How the master is wired into kopf: on-event handlers only, so kopf keeps no diff-base for it."""

from __future__ import annotations

import kopf
import pytest

from mesoskube.master.handlers import register
from mesoskube.master.runner import NoDiffBase, kopf_settings
from mesoskube.settings import Settings
from tests.unit.enginerig import Rig


def connection() -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server="https://127.0.0.1:1")


def test_the_master_registers_on_event_handlers_only_and_keeps_no_diff_base() -> None:
    rig = Rig()
    registry = kopf.OperatorRegistry()
    register(registry, rig.cache, rig.engine, connection)
    assert registry._watching.get_all_handlers()
    assert not registry._changing.get_all_handlers() and not registry._spawning.get_all_handlers()
    storage = kopf_settings(Settings()).persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"metadata": {"name": "n"}, "spec": {"a": [1]}, "status": {"big": "x" * 1000}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None


def test_an_on_update_handler_is_refused_because_it_would_read_the_missing_diff_base() -> None:
    rig = Rig()
    registry = kopf.OperatorRegistry()
    kopf.on.update("nodes", registry=registry)(lambda **_: None)
    with pytest.raises(RuntimeError, match="on-event handlers only"):
        register(registry, rig.cache, rig.engine, connection)
