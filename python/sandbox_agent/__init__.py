"""Python SDK for sandbox-agent: launch gVisor sandboxes (with Docker inside) through the
agent's Unix socket, wait for them, watch them, run commands in them, copy files in and out,
stop them. Standard library only."""
from .client import (Agent, AgentError, ConnectionError_ as AgentUnreachable, Event, LaunchTimeout, Sandbox,
                     SandboxFailed)
from .exec import PIPE, ExecProcess, ExecResult

__all__ = ["Agent", "AgentError", "AgentUnreachable", "Event", "ExecProcess", "ExecResult", "LaunchTimeout", "PIPE",
           "Sandbox", "SandboxFailed"]
__version__ = "0.1.0"
