"""Serving finished runs: a REST and CDS Hooks service with keys, an audit trail, versions and monitoring."""

from medflow.serve.app import create_app, serve
from medflow.serve.service import ServiceConfig
from medflow.serve.store import Store

__all__ = ["ServiceConfig", "create_app", "serve", "Store"]
