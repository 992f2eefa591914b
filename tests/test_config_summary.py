"""What `trainrun validate` shows of a resolved config: what the user set, what trainrun chose."""

from __future__ import annotations

import yaml
from conftest import CONFIGS

from trainrun.config import dump_config, load_config
from trainrun.config.summary import describe, trainrun_chose, user_set


def test_user_set_is_the_file_plus_overrides():
    loaded = load_config(CONFIGS / "mnist_mlp.yaml", ["fit.epochs=7", "fit.shuffle=false"])
    given = user_set(loaded)
    assert given["fit"] == {"epochs": 7, "batch_size": 64, "shuffle": False}
    assert "base_dir" not in given  # filled in by the loader, not the user
    assert "outputs" not in given and "deterministic" not in given


def test_trainrun_chose_lists_non_null_defaults_by_dotted_key():
    loaded = load_config(CONFIGS / "mnist_mlp.yaml", ["fit.shuffle=false"])
    chosen = trainrun_chose(loaded)
    assert chosen["compile.steps_per_execution"] == "auto"
    assert chosen["outputs.state"] is True
    assert "fit.shuffle" not in chosen  # the user set it
    assert "fit.epochs" not in chosen
    assert None not in chosen.values()
    assert not any(key.startswith("fit.class_weight") for key in chosen)  # null


def test_describe_has_no_null_keys_but_the_file_form_keeps_them():
    loaded = load_config(CONFIGS / "mnist_mlp.yaml")
    shown = describe(loaded)
    assert ": null" not in shown
    assert shown.index("# you set") < shown.index("# trainrun chose")
    assert "fit.validation_batch_size: auto" in shown
    full = yaml.safe_load(dump_config(loaded))
    assert full["fit"]["class_weight"] is None  # config.yaml stays complete
