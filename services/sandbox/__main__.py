from services.sandbox.app import serve
from services.sandbox.config import load_settings
from shared.service import run_service

run_service("sandbox", load_settings, lambda s: s.common, serve)
