"""The resume state store survives a kill at any instant of a write. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from trainrun.engine.state import Snapshot, StateStore
from trainrun.errors import RunDirError


def snap(epoch: int, step: int) -> Snapshot:
    history = [{"epoch": e} for e in range(epoch)]
    return Snapshot(
        epoch,
        step,
        {"model/0": np.full(3, epoch * 100 + step, dtype="float32")},
        {"history": history},
    )


def test_round_trip_and_two_kept(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(0, 5))
    store.save(snap(1, 0))
    store.save(snap(1, 3))
    loaded = store.load()
    assert (loaded.epoch, loaded.step) == (1, 3)
    assert loaded.arrays["model/0"].tolist() == [103.0] * 3
    names = sorted(p.name for p in (tmp_path / "state").glob("ckpt-*"))
    assert names == ["ckpt-000002", "ckpt-000003"]  # the latest and the one to fall back to


def test_positions_and_loading_an_older_one(tmp_path):
    """What the workers of a cluster compare, and the state they all have."""
    store = StateStore(tmp_path / "state")
    assert store.positions() == []
    store.save(snap(1, 4))
    store.save(snap(1, 6))
    assert store.positions() == [(1, 6), (1, 4)]
    older = store.load(at=(1, 4))
    assert (older.epoch, older.step) == (1, 4) and not store.skipped
    assert older.arrays["model/0"].tolist() == [104.0] * 3
    assert store.load(at=(1, 5)).step == 4  # the newest at or before it
    assert store.load().step == 6  # the newer one was passed over, not set aside
    assert store.load(at=(0, 9)) is None


def test_kill_mid_write_of_arrays_keeps_previous(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(2, 3))
    partial = tmp_path / "state" / "ckpt-000002"
    partial.mkdir()
    (partial / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")  # no meta.json: incomplete
    assert (store.load().epoch, store.load().step) == (2, 3)


def test_kill_before_latest_is_updated(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(0, 1))
    newer = tmp_path / "state" / "ckpt-000002"
    newer.mkdir()
    np.savez(newer / "arrays.npz", **snap(0, 2).arrays)
    (newer / "meta.json").write_text('{"epoch": 0, "step": 2, "history": []}')
    loaded = store.load()  # LATEST still names the first: it is complete, so it is used
    assert (loaded.epoch, loaded.step) == (0, 1)


def test_damaged_latest_falls_back(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(0, 1))
    (tmp_path / "state" / "LATEST").write_text("ckpt-999999")
    assert store.load().step == 1
    (tmp_path / "state" / "ckpt-000001" / "arrays.npz").write_bytes(b"garbage")
    with pytest.raises(RunDirError, match="ckpt-000001: arrays.npz is unreadable"):
        store.load()  # never a silent restart from the beginning


def test_no_state(tmp_path):
    assert StateStore(tmp_path / "state").load() is None
