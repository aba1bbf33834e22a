"""djsite's settings with the X-Accel views' URLs (djsite/accel_urls.py)."""
from djsite.settings import *  # noqa: F401,F403

ROOT_URLCONF = "djsite.accel_urls"
