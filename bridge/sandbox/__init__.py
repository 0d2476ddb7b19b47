"""A local emulator of the Loyalty.lt Shop API, with fault injection, for `bridge sandbox`, `bridge dev`,
tests, demos and benchmarks.

Its default partner is ``lty_sandbox_demo`` / ``sandbox-secret`` (partner 1); JWT endpoints accept
``Authorization: Bearer sandbox-jwt-<partner_id>``. See :mod:`bridge.sandbox.app` for the routes.
"""

from bridge.sandbox.app import EXTENSION, JWT_PREFIX, Sandbox, create_sandbox_app, sandbox_of
from bridge.sandbox.faults import Faults
from bridge.sandbox.server import SandboxServer, serve_forever
from bridge.sandbox.state import FailRule, PartnerCredentials, SandboxConfig, SandboxError, SandboxState

__all__ = [
    "EXTENSION", "JWT_PREFIX", "FailRule", "Faults", "PartnerCredentials", "Sandbox", "SandboxConfig",
    "SandboxError", "SandboxServer", "SandboxState", "create_sandbox_app", "sandbox_of", "serve_forever",
]
