"""The resume state store survives a kill at any instant of a write. No TensorFlow."""

from __future__ import annotations

import numpy as np

from trainrun.engine.state import Snapshot, StateStore


def snap(epoch: int, step: int) -> Snapshot:
    return Snapshot(
        epoch, step, {"model/0": np.full(3, epoch * 100 + step, dtype="float32")}, {"history": []}
    )


def test_round_trip_and_only_latest_kept(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(0, 5))
    store.save(snap(1, 0))
    loaded = store.load()
    assert (loaded.epoch, loaded.step) == (1, 0)
    assert loaded.arrays["model/0"].tolist() == [100.0] * 3
    assert [p.name for p in (tmp_path / "state").glob("ckpt-*")] == ["ckpt-000002"]


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
    assert store.load() is None


def test_no_state(tmp_path):
    assert StateStore(tmp_path / "state").load() is None
