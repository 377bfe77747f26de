"""Python SDK for sandbox-agent: launch gVisor sandboxes (with Docker inside) through the
agent's Unix socket, wait for them, watch them, stop them. Standard library only."""
from .client import Agent, AgentError, ConnectionError_ as AgentUnreachable, Event, Sandbox, SandboxFailed

__all__ = ["Agent", "AgentError", "AgentUnreachable", "Event", "Sandbox", "SandboxFailed"]
__version__ = "0.1.0"
