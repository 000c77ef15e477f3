"""The web application for a WSGI server (gunicorn, waitress-serve): mimamori.wsgi:application."""

import os

from django.core.wsgi import get_wsgi_application

from mimamori.core import startup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimamori.settings")

# A value the settings refuse stops the process with one line and status 4 before it serves
# anything; gunicorn's master stops on that status instead of starting the worker again.
startup.settings_or_exit()
application = get_wsgi_application()
