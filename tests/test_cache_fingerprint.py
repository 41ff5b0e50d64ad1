"""Cheap cache hits (issue 12): a hit whose stat fingerprint is unchanged is served without reading
the output; any change re-hashes in full; `rlreg verify` re-hashes regardless and marks runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from registry import hashing
from registry.cli import main

CONVERT_ONLY = """\
experiment: fingerprint-test
data:
  synthetic: {num_records: 40, seed: 3}
  max_samples: 40
  test_size: 0.2
"""


def _tick(after: Path) -> None:
    """Wait until the filesystem's clock (the kernel's coarse clock stamps mtime/ctime) has moved
    past ``after``'s timestamps, so a write now gets a different ctime."""
    probe = after.parent / ".clock-probe"
    st = after.stat()
    for _ in range(2000):
        probe.write_bytes(b"")
        if probe.stat().st_mtime_ns > max(st.st_mtime_ns, st.st_ctime_ns):
            probe.unlink()
            return
        time.sleep(0.005)
    raise AssertionError("the filesystem clock did not move")


def test_fingerprint_sees_every_kind_of_change(tmp_path):
    d = tmp_path / "out"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"x" * 1000)
    (d / "sub" / "b.bin").write_bytes(b"y" * 10)
    base, _ = hashing.fingerprint_path(d)
    assert hashing.fingerprint_path(d)[0] == base  # stable while nothing changes

    st = os.stat(d / "a.bin")
    _tick(d / "a.bin")
    with open(d / "a.bin", "r+b") as f:  # same size, in place, mtime restored afterwards
        f.write(b"z")
    os.utime(d / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(d / "a.bin").st_mtime_ns == st.st_mtime_ns and os.stat(d / "a.bin").st_size == st.st_size
    rewritten, _ = hashing.fingerprint_path(d)
    assert rewritten != base  # ctime moved: only the kernel sets it

    (d / "c.bin").write_bytes(b"")
    added, _ = hashing.fingerprint_path(d)
    assert added != rewritten
    (d / "c.bin").unlink()
    replaced = d / "sub" / "b.tmp"
    replaced.write_bytes(b"y" * 10)
    os.replace(replaced, d / "sub" / "b.bin")  # same bytes, new inode
    assert hashing.fingerprint_path(d)[0] not in (base, rewritten, added)


def test_fresh_content_gets_no_fingerprint_until_it_settles(tmp_path, monkeypatch):
    f = tmp_path / "f.bin"
    f.write_bytes(b"fresh")
    digest, fingerprint = hashing.digest_and_fingerprint(f)
    assert digest == hashing.sha256_file(f) and fingerprint is None  # written < RACY_NS ago
    monkeypatch.setattr(hashing, "RACY_NS", 0)
    assert hashing.digest_and_fingerprint(f)[1] == hashing.fingerprint_path(f)[0]


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(CONVERT_ONLY)
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hashing, "RACY_NS", 0)  # outputs written a moment ago count as settled
    calls = []
    real = hashing.digest_path
    monkeypatch.setattr(hashing, "digest_path", lambda p: calls.append(Path(p)) or real(p))
    return {"client": mlflow.MlflowClient(mlflow_uri), "hashed": calls}


def run_json(*args) -> dict:
    r = CliRunner().invoke(main, ["run", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_hit_with_unchanged_fingerprint_reads_nothing(env):
    first = run_json("a")["stages"][0]
    recorded = json.loads(env["client"].get_run(first["run_id"]).data.tags["rlreg.outputs"])
    assert all(e.get("fingerprint") for e in recorded.values())
    env["hashed"].clear()
    again = run_json("a")["stages"][0]
    assert again["cache_hit"] == first["run_id"]
    assert env["hashed"] == []  # served on stat alone
    hit_tag = json.loads(env["client"].get_run(again["run_id"]).data.tags["rlreg.outputs"])
    assert hit_tag == recorded  # the hit run carries the fingerprints on


def test_same_size_rewrite_with_mtime_restored_is_rehashed_and_missed(env):
    first = run_json("a")["stages"][0]
    train = Path(first["outputs"]["train"])
    st = train.stat()
    _tick(train)
    data = bytearray(train.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(train, "r+b") as f:
        f.write(bytes(data))
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    env["hashed"].clear()
    again = run_json("a")["stages"][0]
    assert again["cache_hit"] is None and train in env["hashed"]


def test_touched_but_intact_output_is_rehashed_once_then_cheap_again(env):
    first = run_json("a")["stages"][0]
    train = Path(first["outputs"]["train"])
    _tick(train)
    os.utime(train)  # metadata changes, content does not
    env["hashed"].clear()
    assert run_json("a")["stages"][0]["cache_hit"] == first["run_id"]
    assert train in env["hashed"]  # the fingerprint no longer matched: full hash, intact
    env["hashed"].clear()
    assert run_json("a")["stages"][0]["cache_hit"] == first["run_id"]
    assert env["hashed"] == []  # ...and the refreshed fingerprint serves the next hit


def test_verify_finds_what_a_fingerprint_cannot_see_and_the_cache_stops_serving_it(env):
    client = env["client"]
    first = run_json("a")
    hit = run_json("a")["stages"][0]
    stage_run = first["stages"][0]["run_id"]
    r = CliRunner().invoke(main, ["verify", "--all"])
    assert r.exit_code == 0 and r.output.count("ok ") == 6 and "0 changed" in r.output, r.output

    # Bit rot: the bytes change, the stat does not. Model it by re-recording the fingerprint.
    train = Path(first["stages"][0]["outputs"]["train"])
    data = bytearray(train.read_bytes())
    data[len(data) // 2] ^= 0xFF
    train.write_bytes(bytes(data))
    for run_id in (stage_run, hit["run_id"]):
        tag = json.loads(client.get_run(run_id).data.tags["rlreg.outputs"])
        tag["train"]["fingerprint"] = hashing.fingerprint_path(train)[0]
        client.set_tag(run_id, "rlreg.outputs", json.dumps(tag))
    r = CliRunner().invoke(main, ["verify", first["parent_run_id"], "--json"])
    assert r.exit_code == 1
    rows = json.loads(r.stdout[r.stdout.index("["):])
    assert {(x["output"], x["status"]) for x in rows} == {("train", "changed"), ("test", "ok"), ("source", "ok")}
    for run_id in (stage_run, hit["run_id"]):  # the hit recorded the same path: marked too
        assert json.loads(client.get_run(run_id).data.tags["rlreg.corrupt"]) == ["train"]
    assert run_json("a")["stages"][0]["cache_hit"] is None


def test_verify_usage_errors(env):
    r = CliRunner().invoke(main, ["verify"])
    assert r.exit_code == 2 and "give run ids or --all" in r.output
    r = CliRunner().invoke(main, ["verify", "0" * 32])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output


def test_a_named_source_file_is_not_reread_for_each_cache_key(env, tmp_path):
    src = tmp_path / "data.jsonl"
    rec = ('{"messages": [{"role": "user", "content": "q%03d"}, {"role": "assistant", "content": '
           '"<think>t</think>\\n\\n<tool_call>\\n{\\"name\\": \\"f\\", \\"arguments\\": {}}\\n</tool_call>"}]}\n')
    src.write_text("".join(rec % i for i in range(20)))
    specs = Path(os.environ["RLREG_SPECS_DIR"])
    (specs / "s.yaml").write_text(f"experiment: fingerprint-test\ndata: {{source: {src}, test_size: 0.2}}\n")
    first = run_json("s")["stages"][0]
    env["hashed"].clear()
    assert run_json("s")["stages"][0]["cache_hit"] == first["run_id"]
    assert src.resolve() not in env["hashed"]  # its digest came from the remembered fingerprint

    st = src.stat()
    _tick(src)
    text = src.read_text()
    with open(src, "r+") as f:  # same size, in place, mtime restored: the key must still change
        f.write(text.replace("q000", "q999", 1))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = run_json("s")["stages"][0]
    assert third["cache_hit"] is None and third["cache_key"] != first["cache_key"]


def test_a_spec_reference_never_resolves_to_a_changed_output(env, tmp_path):
    from registry.errors import UsageError
    from registry.pipeline import resolve_ref

    first = run_json("a")["stages"][0]
    train = Path(first["outputs"]["train"])
    assert resolve_ref("@a:convert.train", tmp_path, env["client"]) == train
    data = bytearray(train.read_bytes())
    data[len(data) // 2] ^= 0xFF
    train.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="unchanged output 'train'"):
        resolve_ref("@a:convert.train", tmp_path, env["client"])
