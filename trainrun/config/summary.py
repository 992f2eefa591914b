"""A resolved config as a person reads it: what the user set, then what trainrun chose.

`trainrun validate` prints this; run directories keep the full form
(`dump_config`), nulls included, so that `trainrun fit runs/<id>/config.yaml`
reproduces the run.
"""

from __future__ import annotations

from typing import Any

import yaml

from trainrun.config.loader import LoadedConfig, _ConfigDumper, format_path


def _leaves(data: Any, path: tuple = ()) -> dict[tuple, Any]:
    """Dotted leaves of a nested dict; lists are leaves (a list is set as a whole)."""
    if isinstance(data, dict) and data:
        out: dict[tuple, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, (*path, key)))
        return out
    return {path: data}


def user_set(loaded: LoadedConfig) -> dict[str, Any]:
    """The keys the config file and --set gave, as they were resolved."""
    data = loaded.config.model_dump(mode="json", exclude_unset=True)
    if ("base_dir",) not in loaded.lines and ("base_dir",) not in loaded.overrides:
        data.pop("base_dir", None)  # filled in by load_config: the config file's folder
    return data


def trainrun_chose(loaded: LoadedConfig) -> dict[str, Any]:
    """Defaults the user did not set and that are not null, by dotted key path."""
    given = _leaves(user_set(loaded))
    full = _leaves(loaded.config.model_dump(mode="json", exclude_none=True))
    covered = {path[:i] for path in given for i in range(1, len(path) + 1)}
    return {
        format_path(path): value
        for path, value in full.items()
        if path not in covered and value != {}
    }


def describe(loaded: LoadedConfig) -> str:
    """Two YAML-ish blocks: `# you set` and `# trainrun chose` (dotted keys)."""
    set_text = yaml.dump(
        user_set(loaded), Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, width=100
    )
    chosen = trainrun_chose(loaded)
    chosen_text = "".join(
        f"{key}: {yaml.dump(value, Dumper=_ConfigDumper, default_flow_style=True, width=10**6).strip().removesuffix('...').strip()}\n"
        for key, value in chosen.items()
    )
    return f"# you set\n{set_text}# trainrun chose\n{chosen_text}"
