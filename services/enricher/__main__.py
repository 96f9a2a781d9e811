from services.enricher.app import EnricherService
from services.enricher.config import load_settings
from shared.service import run_service

run_service("enricher", load_settings, lambda s: s.common, EnricherService)
