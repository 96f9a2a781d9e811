from services.gateway.app import serve
from services.gateway.config import load_settings
from shared.service import run_service

run_service("gateway", load_settings, lambda s: s.common, serve)
