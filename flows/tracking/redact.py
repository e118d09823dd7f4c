"""Keep secrets out of logs, MLflow params/tags/artifacts, Prefect artifacts and error messages.

Three kinds of secret are recognised: the password of a URI (`http://user:pw@host` ->
`http://user:***@host`) and secret-looking query parameters (`?token=...`); a value stored under a
secret-looking name (`hf_token`, `api_key`, `password`, ...; not `tokens` or `max_tokens`); and the
value of any environment variable with such a name (`MLFLOW_TRACKING_PASSWORD`, `HF_TOKEN`,
`PREFECT_SERVER_API_AUTH_STRING`, ...) wherever it appears in a text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
#: a name segment (of `a.b_c-d`) that holds a secret: `token`, `hf_token`, `password`, `api_key`, ...
_SECRET_NAME = re.compile(
    r"(?i)^(?:.*_)?(?:token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?|auth_?string)$"
)
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
#: environment values shorter than this are not treated as secrets (flags such as `1` or `true`)
_MIN_SECRET_LEN = 6


def is_secret_name(name: str) -> bool:
    """`HF_TOKEN`, `mlflow.password`, `api-key` -> True; `tokens`, `budget.tokens`, `tokenizer` -> False."""
    return any(_SECRET_NAME.match(part) for part in re.split(r"[./\-\s]", name) if part)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they are secrets, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact_uri(uri: str) -> str:
    """The URI without its password and without secret query parameters."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return redact_text(uri)  # nothing to mask here: keep the URI as written (urlunsplit drops `////`)
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_text(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with URI passwords and the values of secret environment variables masked."""
    out = _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for value in secret_env_values(environ):
        out = out.replace(value, MASK)
    return out


def redact_params(params: Mapping[str, Any]) -> dict[str, str]:
    """String params with secret-named keys masked and secrets in the other values masked."""
    return {k: MASK if is_secret_name(k) else redact_text(str(v)) for k, v in params.items()}


def redact_data(data: Any) -> Any:
    """A JSON-like value (e.g. a spec dump) with secret-named keys masked and secrets in strings masked."""
    if isinstance(data, Mapping):
        return {k: MASK if isinstance(k, str) and is_secret_name(k) else redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    if isinstance(data, str):
        return redact_text(data)
    return data
