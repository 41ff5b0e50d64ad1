"""Write tests/fixtures/hardtry_rewards.jsonl: (response, ground truth, hardtry's scores) cases.

The scores come from running the user's own reward files (hardtry ``src/hardtry/rl/reward_fn_egpo.py``,
``reward_fn_grpo.py``, ``reward_fn.py``), which are NOT part of this repository: pass the directory
that holds them. The test (tests/test_reward_hardtry.py) then checks rlreg's ``think_tool_call``,
``tool_call`` and ``graded_tool_call`` against the recorded scores without their code.

    git --git-dir=$(fetch hardtry) show HEAD:src/hardtry/rl/reward_fn_egpo.py > /tmp/ref/reward_fn_egpo.py  # etc.
    .venv/bin/python scripts/hardtry_reward_fixture.py --hardtry-dir /tmp/ref -o tests/fixtures/hardtry_rewards.jsonl

Cases: hand-picked ones for every rule of theirs, plus seeded random compositions of the same
mutations (``--random N``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import random
from pathlib import Path
from typing import Any

FILES = {"think_tool_call": "reward_fn_egpo.py", "tool_call": "reward_fn_grpo.py", "graded_tool_call": "reward_fn.py"}


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"hardtry_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_score


def block(value: Any, raw: bool = False, pad: str = "\n") -> str:
    body = value if raw else json.dumps(value, ensure_ascii=False)
    return f"<tool_call>{pad}{body}{pad}</tool_call>"


def call(name: str, **arguments: Any) -> dict:
    return {"name": name, "arguments": arguments}


WEATHER = call("get_weather", city="Paris", unit="celsius")
TIME = call("get_time", timezone="UTC")
LISTY = call("search", tags=["a", "b"], limit=3, strict=True, filters={})
NESTED = call("book", trip={"from": "SFO", "to": "NRT", "legs": [{"n": 1}, {"n": 2}]}, seats=2)
GT_CALLS = [[WEATHER], [WEATHER, TIME], [LISTY], [NESTED], [LISTY, WEATHER]]


def gt_text(calls: list, think: str = "<think>The user asks.</think>\n\n", sep: str = "\n") -> str:
    return think + sep.join(block(c) for c in calls)


def _retype(value: Any, rnd: random.Random) -> Any:
    """One type-level mutation somewhere inside a call (true<->1, 1<->1.0, list dupes, {}<->[], …)."""
    if isinstance(value, dict):
        if not value:
            return []
        key = rnd.choice(sorted(value))
        return {**value, key: _retype(value[key], rnd)}
    if isinstance(value, list):
        if not value:
            return {}
        choice = rnd.randrange(3)
        if choice == 0:
            return value + [value[0]]  # duplicate item
        if choice == 1:
            return list(reversed(value))
        i = rnd.randrange(len(value))
        return value[:i] + [_retype(value[i], rnd)] + value[i + 1:]
    if value is True:
        return rnd.choice([1, 1.0, "true"])
    if isinstance(value, int):
        return rnd.choice([float(value), value + 1, str(value), bool(value)])
    if isinstance(value, str):
        return rnd.choice([value.upper(), value + " ", value])
    return value


def hand_picked() -> list[tuple[str, str, str]]:
    gt1, gt2 = gt_text([WEATHER]), gt_text([WEATHER, TIME])
    w, t = block(WEATHER), block(TIME)
    as_string = block({"name": "get_weather", "arguments": json.dumps(WEATHER["arguments"])})
    cases = [
        ("exact", "<think>ok</think>\n\n" + w, gt1),
        ("prompt-opened think", "ok\n</think>\n\n" + w, gt1),
        ("no think", w, gt1),
        ("one newline after think", "<think>ok</think>\n" + w, gt1),
        ("no newline after think", "<think>ok</think>" + w, gt1),
        ("three newlines after think", "<think>ok</think>\n\n\n" + w, gt1),
        ("text before think", "Sure. <think>ok</think>\n\n" + w, gt1),
        ("two think blocks", "<think>a</think>\n\n<think>b</think>\n\n" + w, gt1),
        ("two closes, call between", "a</think>\n\n" + w + "</think>\n\nno call", gt1),
        ("call only inside thinking", "<think>" + w + "</think>\n\n", gt1),
        ("call inside thinking and after", "<think>" + w + "</think>\n\n" + w, gt1),
        ("draft inside thinking, other call after", "<think>" + t + "</think>\n\n" + w, gt1),
        ("json-string arguments", "<think>ok</think>\n\n" + as_string, gt1),
        ("truncated trailing call", "<think>ok</think>\n\n" + w + '\n<tool_call>\n{"name": "get_ti', gt1),
        ("broken second block", "<think>ok</think>\n\n" + w + "<tool_call>oops</tool_call>", gt1),
        ("raw text equal to raw gt", "<think>ok</think>\n\n<tool_call>oops</tool_call>", "<tool_call>oops</tool_call>"),
        ("json string vs raw text", '<think>ok</think>\n\n<tool_call>"oops"</tool_call>', "<tool_call>oops</tool_call>"),
        ("true vs 1", "<think>ok</think>\n\n" + block(call("f", v=True)), gt_text([call("f", v=1)])),
        ("1 vs 1.0", "<think>ok</think>\n\n" + block(call("f", v=1)), gt_text([call("f", v=1.0)])),
        ("true vs 'true'", "<think>ok</think>\n\n" + block(call("f", v=True)), gt_text([call("f", v="true")])),
        ("duplicate list items", "<think>ok</think>\n\n" + block(call("f", v=[1, 1, 2])), gt_text([call("f", v=[1, 2])])),
        ("list order", "<think>ok</think>\n\n" + block(call("f", v=[2, 1])), gt_text([call("f", v=[1, 2])])),
        ("{} vs []", "<think>ok</think>\n\n" + block(call("f", v={})), gt_text([call("f", v=[])])),
        ("[1, true] vs [1]", "<think>ok</think>\n\n" + block(call("f", v=[1, True])), gt_text([call("f", v=[1])])),
        ("key order", "<think>ok</think>\n\n" + block({"arguments": {"unit": "celsius", "city": "Paris"}, "name": "get_weather"}), gt1),
        ("duplicate call", "<think>ok</think>\n\n" + w + w, gt1),
        ("missing call", "<think>ok</think>\n\n" + w, gt2),
        ("calls reordered", "<think>ok</think>\n\n" + t + w, gt2),
        ("no whitespace in block", "<think>ok</think>\n\n" + block(WEATHER, pad=""), gt1),
        ("spaces in block", "<think>ok</think>\n\n" + block(WEATHER, pad="  \r\n "), gt1),
        ("tags reversed", "<think>ok</think>\n\n</tool_call>" + json.dumps(WEATHER) + "<tool_call>", gt1),
        ("nested open tag", "<think>ok</think>\n\n<tool_call><tool_call>" + json.dumps(WEATHER) + "</tool_call>", gt1),
        ("name case", "<think>ok</think>\n\n" + block(call("Get_Weather", city="Paris", unit="celsius")), gt1),
        ("empty response", "", gt1),
        ("whitespace response", "  \n", gt1),
        ("prose only", "<think>ok</think>\n\nThe weather is nice.", gt1),
        ("gt without think", "<think>ok</think>\n\n" + w, w),
        ("gt with a call in its think", "<think>ok</think>\n\n" + w, "<think>maybe " + t + "</think>\n\n" + w),
        ("gt without calls", "<think>ok</think>\n\n" + w, "<think>x</think>\n\nno call"),
        ("both without calls", "<think>ok</think>\n\nhello", "<think>x</think>\n\nhello"),
        ("non-object json", "<think>ok</think>\n\n<tool_call>[1, 2]</tool_call>", "<tool_call>[2, 1, 1]</tool_call>"),
        ("number json", "<think>ok</think>\n\n<tool_call>3</tool_call>", "<tool_call>3.0</tool_call>"),
        ("NaN", "<think>ok</think>\n\n" + block(call("f", v=float("nan"))), gt_text([call("f", v=float("nan"))])),
        ("arguments null", "<think>ok</think>\n\n" + block(call("f") | {"arguments": None}), gt_text([call("f") | {"arguments": None}])),
        ("unicode", "<think>好</think>\n\n" + block(call("f", city="北京")), gt_text([call("f", city="北京")])),
        ("extra text around calls", "<think>ok</think>\n\nSure, checking.\n" + w + "\nDone.", gt1),
        ("empty tool_call block", "<think>ok</think>\n\n<tool_call></tool_call>", gt1),
        ("empty block vs empty gt block", "<think>ok</think>\n\n<tool_call></tool_call>", "<tool_call></tool_call>"),
        ("crlf after think", "<think>ok</think>\r\n\r\n" + w, gt1),
    ]
    return cases


def randomized(n: int, seed: int) -> list[tuple[str, str, str]]:
    rnd = random.Random(seed)
    thinks = ["<think>ok</think>\n\n", "reasoning\n</think>\n\n", "", "<think>ok</think>\n", "pre <think>x</think>\n\n",
              "<think>a</think>\n\n<think>b</think>\n\n", "</think>\n\n</think>\n\n"]
    tails = ["", "\nDone.", '\n<tool_call>\n{"name": "x', "<tool_call>bad</tool_call>", "</think>\n\n"]
    out = []
    for i in range(n):
        calls = rnd.choice(GT_CALLS)
        gt = gt_text(calls, think=rnd.choice(["<think>The user asks.</think>\n\n", "", "<think>" + block(TIME) + "</think>\n\n"]))
        pred = [dict(c) for c in calls]
        op = rnd.randrange(8)
        if op == 1:
            pred = [_retype(c, rnd) for c in pred]
        elif op == 2:
            rnd.shuffle(pred)
        elif op == 3:
            pred = pred + [rnd.choice(pred)]
        elif op == 4:
            pred = pred[:-1]
        elif op == 5:
            pred = [{**c, "arguments": json.dumps(c["arguments"])} for c in pred]
        elif op == 6:
            pred = [_retype(_retype(c, rnd), rnd) for c in pred]
        pads = rnd.choice(["\n", "", " "])
        body = rnd.choice(["\n", "", "\n\n"]).join(block(c, pad=pads) for c in pred)
        think = rnd.choice(thinks)
        if rnd.random() < 0.15:  # a draft call inside the thinking
            think = think.replace("ok", "ok " + block(rnd.choice(calls)), 1)
        out.append((f"random-{i}-op{op}", think + body + rnd.choice(tails), gt))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hardtry-dir", type=Path, required=True, help="directory holding hardtry's reward_fn*.py")
    parser.add_argument("-o", "--output", type=Path, default=Path("tests/fixtures/hardtry_rewards.jsonl"))
    parser.add_argument("--random", type=int, default=600, help="number of generated cases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    functions = {name: _load(args.hardtry_dir / file) for name, file in FILES.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cases = hand_picked() + randomized(args.random, args.seed)
    with args.output.open("w", encoding="utf-8") as fh:
        for case_id, response, gt in cases:
            with contextlib.redirect_stdout(io.StringIO()):  # reward_fn_egpo prints its first calls
                scores = {name: fn("hardgen", response, gt) for name, fn in functions.items()}
            row = {"id": case_id, "response": response, "ground_truth": gt, "hardtry": scores}
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=True) + "\n")
    print(f"{len(cases)} cases -> {args.output}")


if __name__ == "__main__":
    main()
