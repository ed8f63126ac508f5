"""The WSGI entry point gunicorn preloads in its master: the app with its model read but not yet activated."""

from service.app import create_app

app = create_app(activate=False)
