"""The one redaction rule: what counts as a secret, and how it is masked wherever spec or
environment content leaves the process (MLflow params, tags, artifacts, files rlreg writes under
.rlreg, console output).

Two kinds of evidence, both applied everywhere:

- **key-based**: a value whose key (dict key, tag/param name, ``--option`` name, ``NAME=value`` or
  ``name: value`` in text) names a secret: the words of its last dotted component include token(s)
  or auth words, e.g. ``hf_token``, ``OPENAI_API_KEY``, ``db.password``, ``apiKey``,
  ``--api-key``. Judged on whole words, so ``max_new_tokens``, ``tokenizer``, ``cache_key`` and
  ``author`` are not secrets.
- **value-based**: text that looks like a secret wherever it appears: the password in URL userinfo
  (``https://user:pw@host`` -> ``https://user:***@host``), ``Bearer``/``Basic`` credentials, and
  common token shapes (OpenAI ``sk-…``, Hugging Face ``hf_…``, GitHub ``ghp_…``/``github_pat_…``,
  GitLab ``glpat-…``, Slack ``xox?-…``, AWS access key ids ``AKIA…``, Google ``AIza…``, JWTs).

The running process keeps the real values (argv, environment); only what is written is masked.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

REDACTED = "***"

# A key is a secret when its words include one of these anywhere ...
_SECRET_ANYWHERE = {
    "password", "passwd", "secret", "secrets", "credential", "credentials", "apikey", "authorization",
    "passphrase", "cookie", "privatekey",
}
# ... or end with one of these (`hf_token`, `basic_auth`; not `max_token_len`, `auth_mode`) ...
_SECRET_LAST = {"token", "auth", "pat", "bearer"}
# ... or have "key" right after a qualifier (`api_key`, `aws_secret_access_key`; not `cache_key`).
_KEY_QUALIFIERS = {"api", "access", "secret", "private", "ssh", "signing", "encryption", "client", "master", "auth"}
_SPECIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "additional", "start", "end", "stop"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """Judged on the words of the last key component: `hf_token`, `OPENAI_API_KEY`, `db.password`,
    `apiKey`, `--api-key` are secrets; `max_new_tokens`, `tokenizer`, `rlreg.cache_key`,
    `ppo_max_token_len_per_gpu` are not."""
    last = str(key).rsplit(".", 1)[-1].lstrip("-+~")
    words = [w.lower() for w in re.split(r"[_\-\s]+", _CAMEL.sub("_", last)) if w]
    if not words:
        return False
    if _SECRET_ANYWHERE & set(words):
        return True
    if words[-1] in _SECRET_LAST:  # but a tokenizer's `eos_token: </s>` names a vocabulary entry
        return not (words[-1] == "token" and len(words) > 1 and words[-2] in _SPECIAL_TOKENS)
    joined = "".join(words)
    if any(s in joined for s in ("apikey", "secretkey", "accesskey", "privatekey", "password", "passwd")):
        return True
    return any(w == "key" and i > 0 and words[i - 1] in _KEY_QUALIFIERS for i, w in enumerate(words))


# -- value shapes -----------------------------------------------------------------------------------
_TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}"          # OpenAI / Anthropic
    r"|hf_[A-Za-z0-9]{20,}"                            # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_\-]{20,}"                      # GitLab
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"                 # Slack
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"                      # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{35}"                         # Google API key
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r")"
)
# scheme://user:password@host  (the user stays: it says which account, not how to get in)
_URL_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@\"'<>]*):(?P<pw>[^\s/@\"'<>]+)@")
_AUTH_SCHEME = re.compile(r"(?P<pre>\b(?:Bearer|Basic|Token)\s+)(?P<cred>[A-Za-z0-9._~+/=\-]{8,})")
# name=value, name: value, "name": "value" (the value in a lookahead: scanning goes on inside it,
# so `https://h/x?access_token=abc` is found too) and --name value
_KEY_VALUE = re.compile(
    r"(?P<key>(?<![\w.\-])-{0,2}[A-Za-z_][\w.\-]*)(?P<sep>[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?=(?P<val>(?<=\")[^\"\n]*|(?<=')[^'\n]*|[^\s\"',}\]&]+))"
)
# --name value, and the same as list items: "--name", "value" / ['--name', 'value']
_OPTION_VALUE = re.compile(
    r"(?P<key>(?<![\w\-])--?[A-Za-z][\w\-]*)(?P<sep>[ \t]+|[\"']?,[ \t]*[\"']?)(?=(?P<val>[^\s\-\"',][^\s\"',]*))"
)


# `key: old -> new`, as `rlreg run`/`show` print overrides and changes
_CHANGE = re.compile(r"(?P<key>(?<![\w.\-])[A-Za-z_][\w.\-]*)(?P<sep>:[ \t]+\S+[ \t]+->[ \t]+)(?=(?P<val>\S+))")
_NUMBER = re.compile(r"^-?\d{1,9}(\.\d+)?$")  # short numbers only: a long digit run may be a PIN or key


def _mask_pairs(text: str, pattern: re.Pattern) -> str:
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() < pos:
            continue
        val = m.group("val")
        if (not val or val in (REDACTED, "null", "None", "true", "false") or val.startswith("$") or _NUMBER.match(val)
                or not is_secret_key(m.group("key"))):  # numbers are ids and sizes (a vocab's "token": 42)
            continue
        out += [text[pos:m.end("sep")], REDACTED]
        pos = m.end("sep") + len(val)
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str, keys: bool = True) -> str:
    """Mask every secret in free text (logs, diffs, command lines, YAML/JSON bodies). ``keys=False``
    applies only the value-based rules: for files stages produce (data, models), where a key named
    like a secret is content (a vocabulary entry "password"), not a credential."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group('pre')}:{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(lambda m: m.group("pre") + REDACTED, text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    if not keys:
        return text
    for pattern in (_KEY_VALUE, _CHANGE, _OPTION_VALUE):
        text = _mask_pairs(text, pattern)
    return text


def redact_value(key: str, value: Any) -> Any:
    """A (key, value) pair: the whole value goes when the key names a secret."""
    if is_secret_key(key) and value not in (None, "", {}, []):
        return REDACTED
    return redact_obj(value)


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like structure with secrets masked (keys judged, strings scanned)."""
    if isinstance(obj, dict):
        return {k: redact_value(str(k), v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, str) for v in obj):
            return redact_argv(list(obj))  # an argument list: ["--api-key", "X"]
        return [redact_obj(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    """A command line for display: values after secret options masked, URLs/tokens in any arg."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" not in arg and is_secret_key(arg):
            hide_next = True
            out.append(arg)
            continue
        out.append(redact_text(arg))
    return out


# -- files ------------------------------------------------------------------------------------------
TEXT_SUFFIXES = {".txt", ".log", ".yaml", ".yml", ".json", ".jsonl", ".diff", ".patch", ".sh", ".cfg",
                 ".ini", ".toml", ".md", ".csv", ".env", ".py", ".html", ""}


def is_text_artifact(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES and path.is_file()


def redacted_copy(path: Path, dest: Path, keys: bool = True) -> bool:
    """Write ``path`` with secrets masked to ``dest`` line by line; True if anything changed."""
    changed = False
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as src, \
            open(dest, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        for line in src:
            clean = redact_text(line, keys)
            changed = changed or clean != line
            out.write(clean)
    return changed


def redact_file(path: Path) -> bool:
    """Mask secrets in a text file in place (atomically); True if it changed. For logs written by
    child processes (vLLM, BFCL, verl) once they have exited."""
    path = Path(path)
    if not is_text_artifact(path):
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".redact")
    os.close(fd)
    try:
        if redacted_copy(path, Path(tmp)):
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
            return True
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """``Path.write_text`` with secrets masked: for every file rlreg generates."""
    Path(path).write_text(redact_text(text), encoding="utf-8")


def redacted_tree(directory: Path, keys: bool = False) -> Path | None:
    """If any text file under ``directory`` holds a secret, a temp mirror with those files masked
    (others hard-linked or copied) to log instead; None when the directory is clean. Value-based
    rules only by default (a model directory's tokenizer files name tokens, not credentials)."""
    directory = Path(directory)
    dirty = [p for p in directory.rglob("*") if is_text_artifact(p) and redact_text(_read(p), keys) != _read(p)]
    if not dirty:
        return None
    mirror = Path(tempfile.mkdtemp(prefix="rlreg-redacted-"))
    for p in directory.rglob("*"):
        target = mirror / p.relative_to(directory)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if p in dirty:
            redacted_copy(p, target, keys)
        else:
            try:
                os.link(p, target)
            except OSError:
                shutil.copy2(p, target)
    return mirror


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="surrogateescape")
