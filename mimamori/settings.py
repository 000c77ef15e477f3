"""Django settings for mimamori, read from the environment (see docs/operations.md).

Embedded mode (no BROKER_URL): SQLite in MIMAMORI_DATA_DIR unless DATABASE_URL says
otherwise, the database-backed task worker, and the built-in development mailbox when
EMAIL_URL is unset. Distributed mode (BROKER_URL set) is described in docs/architecture.md.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from mimamori import env

BASE_DIR = Path(__file__).resolve().parent

DEBUG = env.boolean("DEBUG", False)
DATA_DIR = env.path("MIMAMORI_DATA_DIR", "./var")
DATA_DIR.mkdir(parents=True, exist_ok=True)

# What cannot work is refused here, when the process starts, each with one sentence that says
# what to set (mimamori/core/startup.py turns it into one line and exit status 4): a BASE_URL
# that is not an http(s) URL, a BROKER_URL that is not RabbitMQ or Redis, a DATABASE_URL that is
# not PostgreSQL or SQLite, a broker with SQLite, an EMAIL_URL that does not parse (below), and
# malformed values of any variable (mimamori/env.py). Whether the database and the broker answer
# is checked by the processes that need them (core/startup.py).
BASE_URL = (env.string("BASE_URL", "http://127.0.0.1:8000") or "").rstrip("/")
if urlsplit(BASE_URL).scheme not in ("http", "https") or not urlsplit(BASE_URL).hostname:
    raise ImproperlyConfigured(
        "BASE_URL must be the site's public address with http:// or https://, "
        f"e.g. https://mimamori.example.jp, not {env.redacted(BASE_URL)!r}."
    )
BROKER_URL = env.string("BROKER_URL")
EMBEDDED = BROKER_URL is None
# The transports the distributed engine is built and tested for (tasking/celery.py).
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "redis+socket")
if BROKER_URL is not None and urlsplit(BROKER_URL).scheme not in BROKER_SCHEMES:
    raise ImproperlyConfigured(
        "BROKER_URL must be a RabbitMQ or Redis URL, e.g. "
        "amqp://mimamori:secret@rabbit.example:5672/mimamori or redis://127.0.0.1:6379/0, "
        f"not {env.redacted(BROKER_URL)!r}."
    )


DATABASE_URL = env.string("DATABASE_URL", f"sqlite:///{DATA_DIR / 'mimamori.sqlite3'}") or ""
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=60)
except ValueError:
    _database = {"ENGINE": ""}
if _database["ENGINE"] not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
    raise ImproperlyConfigured(
        "DATABASE_URL must be a PostgreSQL or SQLite URL, e.g. postgres://mimamori@db.example:5432/mimamori "
        f"or sqlite:////var/lib/mimamori/mimamori.sqlite3, not {env.redacted(DATABASE_URL)!r}."
    )
if BROKER_URL is not None and _database["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured(
        "BROKER_URL is set (distributed mode), which needs PostgreSQL: set DATABASE_URL=postgres://…, "
        "or unset BROKER_URL to run embedded on SQLite."
    )
# A single embedded machine: SQLite, no broker, plain http (a demo, a laptop, one school's box).
# Anything else may be served by several machines, which must share one key.
SINGLE_MACHINE = EMBEDDED and DATABASE_URL.startswith("sqlite:") and not BASE_URL.startswith("https://")


def _secret_key() -> str:
    configured = env.string("SECRET_KEY")
    if configured:
        return configured
    if not EMBEDDED:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when BROKER_URL is set: every machine must share it."
        )
    if not DEBUG and not SINGLE_MACHINE:
        raise ImproperlyConfigured(
            "Set SECRET_KEY (or SECRET_KEY_FILE): with PostgreSQL or an https BASE_URL every "
            "machine serving the site must share one key; only an embedded SQLite http machine "
            "may generate its own."
        )
    # Embedded mode keeps a generated key beside its database so sessions survive restarts.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

_base_host = urlsplit(BASE_URL).hostname or "127.0.0.1"
ALLOWED_HOSTS = [h for h in (env.string("ALLOWED_HOSTS", "") or "").split(",") if h] or [
    _base_host,
    "127.0.0.1",
    "localhost",
]
CSRF_TRUSTED_ORIGINS = [f"{urlsplit(BASE_URL).scheme}://{urlsplit(BASE_URL).netloc}"]
# A refused form (page open too long, cookies off) gets the site's Japanese 403 page.
CSRF_FAILURE_VIEW = "mimamori.core.errors.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "django_tasks",
    "django_tasks_db",
    "mimamori.core",
    "mimamori.accounts",
    "mimamori.registry",
    "mimamori.mail",
    "mimamori.broadcasts",
    "mimamori.receipts",
    "mimamori.audit",
    "mimamori.maintenance",
    "mimamori.support",
    "mimamori.quakes",
    "mimamori.gates",
    "mimamori.console",
    "mimamori.portal",
    "mimamori.api",
    # django-ninja's templates and static files: Swagger UI for /api/v1/docs from this server,
    # not from a CDN (ninja.openapi.docs renders its CDN page when "ninja" is not installed).
    "ninja",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The confirmation storm's one request, answered here (see the class).
    "mimamori.portal.confirm.ConfirmButtonMiddleware",
    # Content-Security-Policy on every response (settings below).
    "csp.middleware.CSPMiddleware",
    # Cache-Control: no-store, private on every dynamic response (personal data); static files,
    # answered by WhiteNoise below it, keep their caching.
    "mimamori.core.middleware.NoStoreMiddleware",
    # While the database is away: a 503 page or JSON instead of a 500 (see the module).
    "mimamori.core.middleware.DatabaseOutageMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A form post over the upload limits: 413 and a page in the user's language (not /api/).
    "mimamori.core.limits.RequestTooLargeMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Lets audit.record() find the client address when a verb is called below a view.
    "mimamori.audit.log.RequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The guardian site's maintenance page (S9); needs the user, so after authentication.
    "mimamori.maintenance.middleware.MaintenanceMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mimamori.urls"
WSGI_APPLICATION = "mimamori.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    # No health checks (CONN_HEALTH_CHECKS): their SELECT 1 before every request would double the
    # database round trips of the confirmation storm's request (portal/confirm.py). A connection
    # lost in a database restart fails one request of its web thread with the 503 page
    # (core/middleware.py), and Django then drops it.
    "default": _database
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE avoids the
    # "database is locked" upgrade deadlock between two writers.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Refuses every login from a client address over the throttle (accounts/throttle.py).
    "mimamori.accounts.throttle.ClientThrottleBackend",
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    # A password like the login name (staff "tanaka" / "tanaka123") is refused (issue 13).
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"

# Login lockout (django-axes): five failures for one login ID from one client address lock
# that pair for 30 minutes. Keyed by the pair, so a stranger elsewhere cannot lock the owner out
# (P11); guessing many IDs or one ID from many places meets the per-client throttle below and the
# small ID space's size. The client address is the one MIMAMORI_PROXY_COUNT makes out.
AXES_FAILURE_LIMIT = env.integer("MIMAMORI_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env.integer("MIMAMORI_LOGIN_LOCKOUT_MINUTES", 30) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "core/locked_out.html"
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "mimamori.audit.log.client_address"
# Trusted reverse proxies in front of the application (each appends to X-Forwarded-For); 0 means
# the client connects directly and REMOTE_ADDR is its address.
MIMAMORI_PROXY_COUNT = env.integer("MIMAMORI_PROXY_COUNT", 0)
# Per-client throttle across login IDs (accounts/throttle.py): this many failed logins or
# registration codes from one client address within the window refuse every login from it
# until older failures leave the window. Generous, for a carrier-grade NAT address shared by
# many phones.
MIMAMORI_CLIENT_FAILURE_LIMIT = env.integer("MIMAMORI_CLIENT_FAILURE_LIMIT", 50)
MIMAMORI_CLIENT_FAILURE_WINDOW_MINUTES = env.integer("MIMAMORI_CLIENT_FAILURE_WINDOW_MINUTES", 15)
# Password reset (P11): a guardian's mailed link lives this long; a staff member's link, handed
# over by the admin who made it, lives longer. Reset mails per client address and per login per hour.
MIMAMORI_PASSWORD_RESET_MINUTES = env.integer("MIMAMORI_PASSWORD_RESET_MINUTES", 60)
MIMAMORI_STAFF_RESET_HOURS = env.integer("MIMAMORI_STAFF_RESET_HOURS", 24)
MIMAMORI_RESET_CLIENT_LIMIT = env.integer("MIMAMORI_RESET_CLIENT_LIMIT", 10)
MIMAMORI_RESET_ACCOUNT_LIMIT = env.integer("MIMAMORI_RESET_ACCOUNT_LIMIT", 3)

SESSION_COOKIE_HTTPONLY = True
HTTPS = BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# HTTPS (docs/operations.md, "Production"). Behind a TLS-terminating proxy that sets
# X-Forwarded-Proto (and strips it from clients), MIMAMORI_TLS_PROXY=1 lets Django see the request
# was https. With an https BASE_URL, plain http is redirected (the health check excepted) and
# browsers are told by HSTS to use https only, for MIMAMORI_HSTS_SECONDS (0 turns it off).
if env.boolean("MIMAMORI_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.boolean("MIMAMORI_SSL_REDIRECT", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz(/database)?$"]
SECURE_HSTS_SECONDS = env.integer("MIMAMORI_HSTS_SECONDS", 365 * 24 * 60 * 60) if HTTPS else 0
# The site's own host name and the names below it (there are none of ours over plain http).
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SILENCED_SYSTEM_CHECKS = [
    # security.W021 asks for SECURE_HSTS_PRELOAD. Preloading is a promise, for the whole
    # registrable domain (often a municipality's), to browser vendors, and takes months to undo:
    # the domain's owner decides it and submits the domain, not this application.
    "security.W021",
]

# Content-Security-Policy (django-csp): everything from this server, no inline script or
# style (the pages' JavaScript and CSS are static files), no frames, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Swagger UI (/api/v1/docs) draws its icons as data: SVG images from its CSS.
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SESSION_COOKIE_AGE = 60 * 60 * 8

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", _("Japanese")), ("en", _("English"))]
LOCALE_PATHS: list[Path] = []  # each app keeps its own locale/ folder
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# WhiteNoise serves straight from the app folders (USE_FINDERS), so collectstatic is optional;
# it only warns, at start-up, when STATIC_ROOT is missing altogether.
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Background work. Embedded mode: django-tasks with its database backend; the row is
# written in the caller's transaction, so a task exists exactly when its data does.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["urgent", "default", "mail", "gates"],
    }
}

# Outgoing mail. EMAIL_URL unset means the built-in development mailbox: `mimamori run`
# starts an SMTP sink on loopback, so the real SMTP path is used even in a demo.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DEVMAIL_PORT = env.integer("MIMAMORI_DEVMAIL_PORT", 8025)
DEVMAIL_DIR = DATA_DIR / "mailbox"


def _email_settings(url: str | None) -> dict[str, object]:
    if url is None:
        return {
            "host": "127.0.0.1",
            "port": DEVMAIL_PORT,
            "user": "",
            "password": "",
            "tls": False,
            "ssl": False,
        }
    parts = urlsplit(url)
    try:
        port = parts.port  # ValueError: not a number, or above 65535
    except ValueError:
        port = 0
    if parts.scheme not in {"smtp", "smtp+tls", "smtps"} or not parts.hostname or port == 0:
        raise ImproperlyConfigured(
            "EMAIL_URL must be the relay as smtp://host:25, smtp+tls://user:pass@host:587 or "
            f"smtps://user:pass@host:465 (port 1-65535, or none), not {env.redacted(url)!r}."
        )
    return {
        "host": parts.hostname,
        "port": port or {"smtp": 25, "smtp+tls": 587, "smtps": 465}[parts.scheme],
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "tls": parts.scheme == "smtp+tls",
        "ssl": parts.scheme == "smtps",
    }


EMAIL_URL = env.string("EMAIL_URL")
DEVMAIL_ENABLED = EMAIL_URL is None
_email = _email_settings(EMAIL_URL)
EMAIL_HOST = str(_email["host"])
EMAIL_PORT = int(str(_email["port"]))
EMAIL_HOST_USER = str(_email["user"])
EMAIL_HOST_PASSWORD = str(_email["password"])
EMAIL_USE_TLS = bool(_email["tls"])
EMAIL_USE_SSL = bool(_email["ssl"])
EMAIL_TIMEOUT = 30
# Date: … +0900, the installation's own offset (Django sets the process time zone to TIME_ZONE).
EMAIL_USE_LOCALTIME = True
DEFAULT_FROM_EMAIL = env.string("MIMAMORI_DEFAULT_FROM", "no-reply@mimamori.invalid")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.string("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Broadcast delivery (see mimamori/broadcasts/delivery.py and docs/operations.md).
MIMAMORI_SMTP_CONNECTIONS = env.integer("MIMAMORI_SMTP_CONNECTIONS", 4)
MIMAMORI_RETRY_BASE_SECONDS = env.integer("MIMAMORI_RETRY_BASE_SECONDS", 10)
MIMAMORI_RETRY_MAX_SECONDS = env.integer("MIMAMORI_RETRY_MAX_SECONDS", 600)
MIMAMORI_RETRY_MAX_ATTEMPTS = env.integer("MIMAMORI_RETRY_MAX_ATTEMPTS", 12)
MIMAMORI_DELIVERY_LEASE_SECONDS = env.integer("MIMAMORI_DELIVERY_LEASE_SECONDS", 120)
# Carrier profiles (B3, B12; mail/carriers.py): a group's SMTP sessions are leases that run out
# this long after a dead worker's last renewal; a reply slower than SLOW, or a deferral, is
# trouble, and TROUBLE_LIMIT of them in a row pause the group for PAUSE seconds, doubling each
# time up to PAUSE_MAX; a rate-limited group's mails are reserved at most HORIZON seconds ahead.
MIMAMORI_CARRIER_LEASE_SECONDS = env.integer("MIMAMORI_CARRIER_LEASE_SECONDS", 15)
# Above Postfix's in_flow_delay (1 s): the relay pacing its own inflow is not a carrier's trouble.
MIMAMORI_CARRIER_SLOW_SECONDS = env.integer("MIMAMORI_CARRIER_SLOW_SECONDS", 2)
MIMAMORI_CARRIER_TROUBLE_LIMIT = env.integer("MIMAMORI_CARRIER_TROUBLE_LIMIT", 3)
MIMAMORI_CARRIER_PAUSE_SECONDS = env.integer("MIMAMORI_CARRIER_PAUSE_SECONDS", 10)
MIMAMORI_CARRIER_PAUSE_MAX_SECONDS = env.integer("MIMAMORI_CARRIER_PAUSE_MAX_SECONDS", 300)
MIMAMORI_CARRIER_HORIZON_SECONDS = env.integer("MIMAMORI_CARRIER_HORIZON_SECONDS", 5)
# A group with no session free has its mails tried again this much later.
MIMAMORI_CARRIER_BUSY_SECONDS = env.integer("MIMAMORI_CARRIER_BUSY_SECONDS", 2)
# Address health (P5, registry/health.py): "no such user" suppresses an address at once; any
# other failed mail counts, and this many within the window suppress it too. Bounces come back
# to b-<token>@ the municipality's mail domain, or this domain if set (mail/verp.py).
MIMAMORI_BOUNCE_LIMIT = env.integer("MIMAMORI_BOUNCE_LIMIT", 3)
MIMAMORI_BOUNCE_WINDOW_DAYS = env.integer("MIMAMORI_BOUNCE_WINDOW_DAYS", 30)
MIMAMORI_BOUNCE_DOMAIN = env.string("MIMAMORI_BOUNCE_DOMAIN", "") or ""
# The records each mail domain publishes (mail/records.py, the console's DNS page): the SPF
# mechanisms that name the relay (`mx`: the hosts that take the domain's bounces send its mail
# too), where DMARC reports go (none if empty), and the DNS servers the page asks (the
# machine's own if empty).
MIMAMORI_SPF = env.string("MIMAMORI_SPF", "mx") or "mx"
MIMAMORI_DMARC_RUA = env.string("MIMAMORI_DMARC_RUA", "") or ""
MIMAMORI_DNS_SERVERS = env.ip_ports("MIMAMORI_DNS_SERVERS", 53)
# Distributed mode (docs/operations.md): broker queue names get this prefix, so several
# installations (or test runs) can share one RabbitMQ or Redis without taking each other's work.
MIMAMORI_QUEUE_PREFIX = env.string("MIMAMORI_QUEUE_PREFIX", "") or ""
# Every worker runs the sweep (mimamori/tasking/sweep.py) this often; 0 turns it off.
MIMAMORI_SWEEP_SECONDS = env.integer("MIMAMORI_SWEEP_SECONDS", 5)
# How long `mimamori run` and `mimamori worker` wait, when they start, for the database and the
# broker to answer before they give up with exit status 3 (core/startup.py); 0: one try.
MIMAMORI_START_WAIT_SECONDS = max(0, env.integer("MIMAMORI_START_WAIT_SECONDS", 60))
MIMAMORI_REQUEUE_AFTER_SECONDS = env.integer("MIMAMORI_REQUEUE_AFTER_SECONDS", 15 * 60)
# Read confirmation: how long a mail's confirmation link works (issue 4).
MIMAMORI_CONFIRMATION_DAYS = env.integer("MIMAMORI_CONFIRMATION_DAYS", 30)
# Reminders to the unconfirmed (P3): at most this many per broadcast, by hand and automatic together.
MIMAMORI_MAX_REMINDERS = env.integer("MIMAMORI_MAX_REMINDERS", 3)
# Deregistered children's personal data is erased this many days after deregistration (S10).
MIMAMORI_RETENTION_DAYS = env.integer("MIMAMORI_RETENTION_DAYS", 365)
# Support desk (S13): inquiries one network address, or one registrant, may send an hour.
MIMAMORI_INQUIRY_LIMIT_PER_HOUR = env.integer("MIMAMORI_INQUIRY_LIMIT_PER_HOUR", 5)
# Earthquakes (issue 15, docs/operations.md "Earthquakes"): the JMA Atom feed every worker polls
# (quakes/feed.py; unset: off), how often at most, and how long one request may take.
MIMAMORI_JMA_FEED_URL = env.string("MIMAMORI_JMA_FEED_URL")
if MIMAMORI_JMA_FEED_URL is not None and (
    urlsplit(MIMAMORI_JMA_FEED_URL).scheme not in ("http", "https")
    or not urlsplit(MIMAMORI_JMA_FEED_URL).netloc
):
    raise ImproperlyConfigured(
        f"MIMAMORI_JMA_FEED_URL must be an http:// or https:// URL, not {MIMAMORI_JMA_FEED_URL!r}."
    )
MIMAMORI_JMA_POLL_SECONDS = env.integer("MIMAMORI_JMA_POLL_SECONDS", 10)
MIMAMORI_JMA_TIMEOUT_SECONDS = env.integer("MIMAMORI_JMA_TIMEOUT_SECONDS", 5)

# Gates (issue 16, docs/operations.md "Gates"): a pass is mailed only while it is this recent (a
# reader's older backlog is recorded and listed, not mailed); a tag read again within the repeat
# window in the same direction is the same pass; passes are erased after the retention days.
MIMAMORI_GATE_RECENT_MINUTES = env.integer("MIMAMORI_GATE_RECENT_MINUTES", 30)
MIMAMORI_GATE_REPEAT_SECONDS = env.integer("MIMAMORI_GATE_REPEAT_SECONDS", 120)
MIMAMORI_GATE_RETENTION_DAYS = env.integer("MIMAMORI_GATE_RETENTION_DAYS", 28)
