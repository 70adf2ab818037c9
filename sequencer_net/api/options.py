"""What the API server needs from the node's configuration, read once at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sequencer_net.api.admin_auth import load_admin_token
from sequencer_net.api.health import DEFAULT_HEALTH_STALL_S, HEALTH_STALL_VIEW_TIMEOUTS
from sequencer_net.home.config import ApiSettings, NodeConfig


@dataclass(frozen=True)
class ApiOptions:
    host: str = "127.0.0.1"
    port: int = 26700
    max_connections: int = ApiSettings.max_connections
    body_timeout_s: float = ApiSettings.body_timeout_ms / 1000
    idle_timeout_s: float = ApiSettings.idle_timeout_ms / 1000
    max_body_buffer_bytes: int = ApiSettings.max_body_buffer_bytes
    admin_token: str | None = None
    """None: the admin endpoints are off."""
    subscriber_queue: int = ApiSettings.subscriber_queue
    max_subscribers: int = ApiSettings.max_subscribers
    max_subscriptions_per_client: int = ApiSettings.max_subscriptions_per_client
    health_stall_s: float = DEFAULT_HEALTH_STALL_S
    """/v1/health answers 503 once the height has not moved for this long."""

    def __repr__(self) -> str:  # never print the token
        token = None if self.admin_token is None else "***"
        return (
            f"ApiOptions(host={self.host!r}, port={self.port}, max_connections="
            f"{self.max_connections}, body_timeout_s={self.body_timeout_s}, idle_timeout_s="
            f"{self.idle_timeout_s}, max_body_buffer_bytes={self.max_body_buffer_bytes}, "
            f"admin_token={token}, subscriber_queue={self.subscriber_queue}, "
            f"max_subscribers={self.max_subscribers}, max_subscriptions_per_client="
            f"{self.max_subscriptions_per_client}, health_stall_s={self.health_stall_s})"
        )

    @classmethod
    def from_config(
        cls,
        config: NodeConfig,
        environ: Mapping[str, str] | None = None,
        *,
        genesis_view_timeout_ms: int | None = None,
    ) -> ApiOptions:
        """The [api] settings, with the admin token read from its file or the
        environment; AdminTokenError (a ConfigError) if it is unusable. The
        health bound is a few view timeouts ([consensus] view_timeout_ms, else
        the genesis one)."""
        api = config.api
        view_timeout_ms = config.consensus.view_timeout_ms or genesis_view_timeout_ms
        health_stall_s = (
            HEALTH_STALL_VIEW_TIMEOUTS * view_timeout_ms / 1000
            if view_timeout_ms
            else DEFAULT_HEALTH_STALL_S
        )
        return cls(
            host=api.listen_host,
            port=api.listen_port,
            max_connections=api.max_connections,
            body_timeout_s=api.body_timeout_ms / 1000,
            idle_timeout_s=api.idle_timeout_ms / 1000,
            max_body_buffer_bytes=api.max_body_buffer_bytes,
            subscriber_queue=api.subscriber_queue,
            max_subscribers=api.max_subscribers,
            max_subscriptions_per_client=api.max_subscriptions_per_client,
            health_stall_s=health_stall_s,
            admin_token=load_admin_token(
                config.admin_token_path, os.environ if environ is None else environ
            ),
        )
