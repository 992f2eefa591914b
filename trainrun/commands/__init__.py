"""Commands that read runs and registries (no training): what the CLI shows."""
