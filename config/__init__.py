"""Configuration: process settings from the environment and the stores a deployment serves."""

from config.settings import Settings
from config.stores import ConfigError, StoreConfig, Stores, load_stores

__all__ = ["ConfigError", "Settings", "StoreConfig", "Stores", "load_stores"]
