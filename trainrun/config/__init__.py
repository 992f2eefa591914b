"""Config loading and the typed schema of the YAML format."""

from trainrun.config.loader import (
    LoadedConfig,
    check_callback_paths,
    dump_config,
    format_path,
    load_config,
    with_seed,
)
from trainrun.config.schema import RunConfig

__all__ = [
    "LoadedConfig",
    "RunConfig",
    "check_callback_paths",
    "dump_config",
    "format_path",
    "load_config",
    "with_seed",
]
