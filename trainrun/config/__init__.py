"""Config loading and the typed schema of the YAML format."""

from trainrun.config.loader import LoadedConfig, dump_config, format_path, load_config, with_seed
from trainrun.config.schema import RunConfig

__all__ = ["LoadedConfig", "RunConfig", "dump_config", "format_path", "load_config", "with_seed"]
