from services.router.app import RouterService
from services.router.config import load_settings
from shared.service import run_service

run_service("router", load_settings, lambda s: s.common, RouterService)
