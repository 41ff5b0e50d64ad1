"""Check a tracking URI before MLflow touches it, so a misconfigured store is one clear line,
not a traceback from deep inside MLflow, and an unreachable server is a bounded wait, not a
silent hang in MLflow's retries (default 7 retries with exponential backoff, 120 s timeouts).

- ``sqlite:///path``: fine (its directory is created).
- ``postgresql[+driver]://``, ``mysql[+driver]://``, ``mssql[+driver]://``: the SQLAlchemy driver
  must import (``postgresql://`` alone means psycopg 3; write ``postgresql+psycopg2://``).
- ``http(s)://``: ``GET /health`` must answer within ``RLREG_STORE_TIMEOUT_S`` seconds (5).
- A password in the URI is refused (it would be copied into every place the URI goes: the verl
  config, console lines): MLflow reads ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``,
  libpq reads ``~/.pgpass`` / ``PGPASSFILE``.
- File stores (``file://``, bare paths) and unknown schemes are refused with the fix.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request

from registry.errors import RlregError, UsageError

DB_SCHEMES = ("postgresql", "mysql", "mssql")
# Bounded MLflow HTTP behaviour for every later call (set only when the user has not chosen).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class StoreUnreachable(RlregError):
    exit_code = 1


def _env_var_hint() -> str:
    return "set MLFLOW_TRACKING_URI to sqlite:///mlflow.db, postgresql+psycopg2://…, or http://host:5000"


def check_store_uri(uri: str) -> None:
    """Raise UsageError (exit 2) for a URI rlreg cannot use, StoreUnreachable (exit 1) for a
    server that does not answer in time."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    base = scheme.split("+", 1)[0]
    if parsed.password:
        shown = uri.replace(f":{parsed.password}@", ":***@")
        where = ("MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" if base in ("http", "https")
                 else "~/.pgpass or PGPASSFILE (a 0600 file)")
        raise UsageError(f"tracking URI {shown}: holds a password, which would be copied wherever the URI goes "
                         f"(remove it from the URI and put it in {where})")
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise UsageError(f"tracking URI '{uri}': write sqlite:///relative.db or sqlite:////absolute.db")
        return
    if base in DB_SCHEMES:
        _check_driver(uri)
        return
    if scheme in ("http", "https"):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        _probe(uri)
        return
    if scheme in ("databricks", "databricks-uc", "uc"):
        return
    if scheme in ("", "file") or len(scheme) == 1:  # a bare path, or a Windows drive letter
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
            return
        raise UsageError(f"tracking URI '{uri}': MLflow's file store is in maintenance mode and rlreg does "
                         f"not use it ({_env_var_hint()}; `mlflow migrate-filestore` moves old runs)")
    raise UsageError(f"tracking URI '{uri}': unknown scheme '{scheme}' ({_env_var_hint()})")


def _check_driver(uri: str) -> None:
    try:
        from sqlalchemy.engine.url import make_url

        dialect = make_url(uri).get_dialect()
        dialect.import_dbapi()
    except ImportError as exc:
        name = getattr(exc, "name", None) or str(exc)
        raise UsageError(f"tracking URI '{uri}': its database driver '{name}' is not installed (install it, or name "
                         "an installed one, e.g. postgresql+psycopg2://…)") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError / NoSuchModuleError: a malformed URI
        raise UsageError(f"tracking URI '{uri}': not a database URL SQLAlchemy understands ({exc})") from None


def _probe(uri: str) -> None:
    timeout = float(os.environ.get("RLREG_STORE_TIMEOUT_S", "5"))
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            resp.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # the basic-auth app guards /health too: the server is there
            return
        raise StoreUnreachable(f"tracking server {uri} answered {exc.code} on /health (is it an MLflow server?)") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnreachable(f"tracking server {uri} is unreachable ({reason}; waited at most {timeout:g} s): "
                               "start it (scripts/tracking-server.sh start) or point MLFLOW_TRACKING_URI elsewhere") from None
