"""The WSGI entry point gunicorn serves (see the Procfile): ``bridge.wsgi:app``."""

from __future__ import annotations

import sys

from bridge.app import create_app
from config.log_format import setup_logging
from config.settings import Settings
from config.stores import ConfigError

_settings = Settings()
setup_logging(_settings.log_level)
try:
    app = create_app(_settings)
except ConfigError as exc:
    # One clear line instead of a traceback; gunicorn then stops (the app cannot boot).
    print(f"loyalty-bridge: configuration error: {exc}", file=sys.stderr)
    sys.exit(4)
