"""No secret ever reaches the store (issue 16): one redaction rule (registry/redact.py) applied at
every boundary. Secrets are planted in every string field the schema allows, in tags (key-based)
and in a dirty git diff; then the sqlite file, the artifact tree, the .rlreg tree and the console
output are grepped for them: 0 hits."""

from __future__ import annotations

import json
import subprocess
import typing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

from registry import redact
from registry.cli import main
from registry.spec import Spec

# Distinct secrets, each in a shape one of the rules must catch.
S_URL = "pw1URLsecretVALUE"          # URL userinfo password
S_OPT = "pw2OPTIONsecretVALUE"       # --api-key value
S_EQ = "pw3EQUALSsecretVALUE"        # --token=value
S_TAG = "pw4TAGsecretVALUE"          # tags.api_key (key-based)
S_HF = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2"        # token shape
S_SK = "sk-proj-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"   # token shape
S_GH = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4"
S_AWS = "AKIA" + "QWERTYUIOPASDFGH"
S_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyMTIzNCJ9.c2lnbmF0dXJlX2lzX2hlcmU"
S_DIFF = "pw5DIFFsecretVALUE"
SECRETS = [S_URL, S_OPT, S_EQ, S_TAG, S_HF, S_SK, S_GH, S_AWS, S_JWT, S_DIFF]
SHAPES = [f"https://bob:{S_URL}@example.com/x", f"--api-key {S_OPT}", f"--token={S_EQ}", S_HF, S_SK, S_GH, S_AWS, S_JWT]
# Fields whose value becomes the data itself (parquet columns), not metadata: not planted.
DATA_CONTENT = {"data.data_source", "data.ability", "name", "extends", "experiment", "data.source", "data.tokenizer"}
# Pairs where only one of the two may be set (the other one is planted).
EXCLUSIVE = {"model.path", "eval.bfcl_data.category"}

BASE = {
    "description": "secret probe",
    "experiment": "secrets-test",
    "pipeline": ["convert"],
    "tags": {"api_key": S_TAG, "hf_token": S_HF, "password": S_TAG, "study": "secrets"},
    "data": {"synthetic": {"num_records": 40, "seed": 1}, "max_samples": 40, "test_size": 0.2},
    "model": {"tiny": {}},
    "sft": {}, "merge": {},
    "train": {"backend": "verl", "verl": {"verl_overrides": {"+trainer.wandb_api_key": S_TAG,
                                                             "trainer.hub_url": f"https://u:{S_URL}@h"}}},
    "eval": {"bfcl": {"extra_vllm_args": ["--api-key", S_OPT], "base_url": f"http://u:{S_URL}@gpu1:8000"}},
    "entropy": {}, "generate": {},
}


def string_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, typing.Any]]:
    """Dotted paths of every str / list[str] field in the schema (the places a secret can go)."""
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        args = typing.get_args(ann) or (ann,)
        sub = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if sub:
            out += string_fields(sub[0], path + ".")
        elif typing.get_origin(ann) is list and typing.get_args(ann) == (str,):
            out.append((path, list))
        elif typing.get_origin(ann) is dict:
            continue  # tags and verl_overrides: planted by key in BASE
        elif str in args:
            out.append((path, str))
    return out


def _set(d: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def planted_spec() -> tuple[dict, list[str]]:
    """BASE plus a secret in every string field that still validates with one."""
    import copy

    spec, planted = copy.deepcopy(BASE), []
    for path, kind in string_fields(Spec):
        if path in DATA_CONTENT or path in EXCLUSIVE:
            continue
        for shape in SHAPES:
            trial = copy.deepcopy(spec)
            _set(trial, path, shape if kind is str else [shape, shape + "2"] if "label" in path else [shape])
            if path == "entropy.labels":
                _set(trial, "entropy.models", ["a", "b"])
            if path == "eval.bfcl.test_ids":
                _set(trial, path, [shape + "_0", shape + "_1"])
            try:
                Spec.model_validate({"name": "s", **trial})
            except ValidationError:
                continue
            spec = trial
            planted.append(path)
            break
    return spec, planted


@pytest.fixture()
def probe(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    spec, planted = planted_spec()
    (specs / "probe.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # a dirty checkout whose diff holds a secret: logged as git.diff
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "specs").mkdir()
    git = ["git", "-C", str(proj), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (proj / "conf.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (proj / "conf.py").write_text(f"x = 1\nOPENAI_API_KEY = '{S_DIFF}'\nurl = 'https://me:{S_URL}@db'\n")
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.chdir(store)  # MLflow's default artifact root (./mlruns) lands in the grepped tree
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_PROJECT_ROOT", str(proj))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    return {"tmp": tmp_path, "planted": planted, "db": Path(mlflow_uri.removeprefix("sqlite:///"))}


def _hits(root: Path) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p}: {s}" for s in SECRETS if s.encode() in data]
    return found


def test_planted_in_every_string_field():
    _, planted = planted_spec()
    all_fields = [p for p, _ in string_fields(Spec) if p not in DATA_CONTENT | EXCLUSIVE]
    missing = sorted(set(all_fields) - set(planted))
    assert not missing, f"no secret shape validates in: {missing}"
    assert len(planted) >= 30


def test_no_secret_reaches_store_rlreg_tree_or_console(probe):
    r = CliRunner().invoke(main, ["run", "probe", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    import mlflow

    parent = mlflow.MlflowClient().get_run(out["parent_run_id"])
    assert parent.data.tags["spec.tag.api_key"] == redact.REDACTED
    assert parent.data.tags["spec.tag.study"] == "secrets"
    assert parent.data.tags["rlreg.git_dirty"] == "true"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "git.diff"} <= arts
    console = r.output
    for args in (["show", "probe"], ["show", "probe", "--resolved"], ["run", "probe", "--dry-run"],
                 ["diff", "probe", "probe", "--all"], ["validate", "probe"], ["list"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
        console += res.output
    for args in (["show", "probe", f"tags.hf_token={S_HF}"], ["diff", "probe", "probe", f"tags.password={S_OPT}"],
                 ["run", "probe", "--dry-run", f"tags.api_key={S_EQ}"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
        console += res.output
    assert [s for s in SECRETS if s in console] == []
    hits = _hits(probe["tmp"] / "store") + _hits(probe["tmp"] / "rlreg-home")
    assert probe["db"].is_file() and (probe["tmp"] / "store" / "mlruns").is_dir()
    assert hits == []


def test_console_error_lines_are_redacted(tmp_path):
    (tmp_path / "s.yaml").write_text(f"data: {{synthetic: {{}}}}\ntags: {{api_key: 5, url: 'https://a:{S_URL}@h'}}\n"
                                     f"bogus_field: {S_SK}\n")
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "s.yaml")])
    assert r.exit_code == 2 and r.output.startswith("Error: ")
    assert S_SK not in r.output and S_URL not in r.output


@pytest.mark.parametrize("key", ["hf_token", "train.verl.api_key", "eval.bfcl.OPENAI_API_KEY", "db.password", "x.secret",
                                 "apiKey", "--api-key", "aws_secret_access_key", "basic_auth", "HF_TOKEN", "client_secret",
                                 "spec.tag.GITHUB_TOKEN", "credentials"])
def test_secret_keys(key):
    assert redact.is_secret_key(key)


@pytest.mark.parametrize("key", ["max_new_tokens", "max_tokens", "tokenizer", "data.tokenizer", "rlreg.cache_key",
                                 "ppo_max_token_len_per_gpu", "author", "auth_mode", "key", "num_tokens", "token_budget_x",
                                 "rollout.max_response_length", "monkey", "eos_token", "pad_token", "tokenizer.bos_token"])
def test_not_secret_keys(key):
    assert not redact.is_secret_key(key)


@pytest.mark.parametrize("text, secret", [
    (f"https://bob:{S_URL}@host/x", S_URL), (f"postgresql+psycopg2://mlflow:{S_URL}@db:5432/m", S_URL),
    (f"vllm serve m --api-key {S_OPT} --port 1", S_OPT), (f"--token={S_EQ}", S_EQ), (f"HF_TOKEN={S_EQ} x", S_EQ),
    (f'{{"password": "{S_OPT} with spaces"}}', "with spaces"), (f"hf_token: {S_EQ}\n", S_EQ),
    (f"Authorization: Bearer {S_OPT}", S_OPT), (f"see {S_HF}.", S_HF), (S_SK, S_SK), (S_GH, S_GH),
    (f"id={S_AWS}", S_AWS), (S_JWT, S_JWT), (f"https://h/cb?access_token={S_EQ}&x=1", S_EQ),
    (f"+trainer.wandb_api_key={S_EQ}", S_EQ), (f"  set tags.api_key: {S_OPT} -> {S_EQ}", S_EQ), ("--api-key " + "2" * 24, "2" * 24), (f"{{'OPENAI_API_KEY': '{S_EQ}'}}", S_EQ),
])
def test_redact_text_masks(text, secret):
    clean = redact.redact_text(text)
    assert secret not in clean and redact.REDACTED in clean


@pytest.mark.parametrize("text", ["max_tokens: 256", "tokenizer: /models/qwen", "ppo_max_token_len_per_gpu=16384",
                                  "https://example.com/a/b", "rlreg.cache_key: 3f2a", "sha256 " + "ab" * 32,
                                  "HF_TOKEN=$HF_TOKEN", "--port 8000 --max-model-len 4096", "git@github.com:x/y.git"])
def test_redact_text_keeps_ordinary_text(text):
    assert redact.redact_text(text) == text


def test_redact_argv_and_files(tmp_path):
    assert redact.redact_argv(["vllm", "--api-key", S_OPT, "--port", "1"]) == ["vllm", "--api-key", "***", "--port", "1"]
    log = tmp_path / "server.log"
    log.write_text(f"args: {{'api_key': '{S_OPT}', 'port': 1}}\nok\n")
    assert redact.redact_file(log) and S_OPT not in log.read_text() and "'port': 1" in log.read_text()
    assert not redact.redact_file(log)  # already clean: untouched
    d = tmp_path / "model"
    d.mkdir()
    # a model directory: its tokenizer files name tokens; they must be logged byte for byte
    (d / "tokenizer_config.json").write_text('{"eos_token": "</s>", "pad_token": "<pad>"}\n')
    (d / "vocab.json").write_text('{"password": 3552, "token": 17, "secret": 9}\n')
    (d / "w.bin").write_bytes(b"\x00\x01")
    assert redact.redacted_tree(d) is None
    (d / "notes.txt").write_text(f"pushed with https://u:{S_URL}@hub and {S_HF}\n")
    mirror = redact.redacted_tree(d)
    assert mirror is not None and (mirror / "w.bin").is_file()
    assert S_URL not in (mirror / "notes.txt").read_text() and S_HF not in (mirror / "notes.txt").read_text()
    assert (mirror / "vocab.json").read_text() == (d / "vocab.json").read_text()
    assert S_URL in (d / "notes.txt").read_text()  # the source stays as it was; only the logged copy is masked


def test_tracker_masks_tags_params_texts_and_tables(tracker):
    tracker.set_tags({"spec.tag.hf_token": S_HF, "note": f"see https://u:{S_URL}@h"})
    tracker.log_params({"eval": {"bfcl": {"extra_vllm_args": ["--api-key", S_OPT]}, "base_url": f"http://u:{S_URL}@h"}})
    tracker.log_text(f"token={S_EQ}", "x.txt")
    tracker.log_dict({"password": S_OPT}, "d.json")
    tracker.log_table([{"text": S_SK}], "t.json")
    tracker.flush()
    run = tracker.client.get_run(tracker.run_id)
    blob = json.dumps([run.data.tags, run.data.params])
    assert all(s not in blob for s in SECRETS)
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(run_id=tracker.run_id, tracking_uri=tracker.client.tracking_uri))
    assert _hits(local) == []
