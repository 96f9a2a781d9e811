from services.gateway.app import GatewayService
from services.gateway.config import load_settings
from shared.service import run_service

run_service("gateway", load_settings, lambda s: s.common, GatewayService)
