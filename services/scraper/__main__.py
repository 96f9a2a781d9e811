from services.scraper.app import ScraperService
from services.scraper.config import load_settings
from shared.service import run_service

run_service("scraper", load_settings, lambda s: s.common, ScraperService)
