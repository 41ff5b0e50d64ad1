"""``rlreg import`` of an ms-swift SFT experiment directory -> a spec with ``sft.backend: swift``.

1. the user's arguments are their sft_config.yaml turned into ``swift sft``'s argument list as
   swift's CLI does (``swift_files.config_argv``), then the script's own ``--key value`` after it;
2. every argument with a spec field sets it (``SWIFT_TO_SPEC``; a key they leave unset takes
   ms-swift 4.6.0's default, ``SWIFT_DEFAULTS``, so the spec says what swift ran);
3. the spec's ``swift sft`` command (runners/sft/swift.py ``sft_argv``) is compared with theirs on
   every argument either side passes; each one that differs — a swift argument without a spec
   field (``attn_impl``, ``packing``, ``deepspeed``, …) or a value rlreg always passes
   (``logging_steps``, ``per_device_eval_batch_size``) — becomes a ``sft.swift.extra_args`` entry
   (those win over generated ones), so the commands agree except on the ``DELIBERATE`` keys;
4. a key that is not an ms-swift 4.6.0 argument (swift would refuse to start) is left out and
   reported, with its value kept as a tag; so is every file the import does not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from registry.errors import SpecError
from registry.importer.mapping import eval_sections, get_path
from registry.importer.swift_files import SftExperimentDir, parse_argv, recorded_accuracies
from registry.importer.swift_names import SFT_ARGUMENTS, SWIFT_VERSION

# ms-swift 3.x names that 4.x renamed (the user's configs are 3.x)
RENAMED = {"train_type": "tuner_type"}

# ms-swift 4.6.0 defaults of the arguments rlreg's command always passes (swift/arguments/**,
# swift/trainers/arguments.py; transformers' where swift keeps them). IMPLICIT: swift derives the
# value at run time (from the model, the device count), so no argument reproduces "unset".
IMPLICIT = object()
SWIFT_DEFAULTS: dict[str, Any] = {
    "tuner_type": "lora", "max_length": IMPLICIT, "truncation_strategy": "delete", "loss_scale": "default",
    "torch_dtype": IMPLICIT, "per_device_train_batch_size": 1, "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": IMPLICIT, "weight_decay": 0.1, "lr_scheduler_type": "cosine",
    "warmup_steps": 0, "max_grad_norm": 1.0, "group_by_length": False, "seed": 42, "data_seed": 42,
    "save_steps": 500, "save_total_limit": IMPLICIT, "logging_steps": 5, "num_train_epochs": 3.0, "max_steps": -1,
    "lora_rank": 8, "lora_alpha": 32.0, "lora_dropout": 0.05, "target_modules": ["all-linear"],
    "save_strategy": "steps",
}
IMPLICIT_WHY = {
    "max_length": "the model's max_position_embeddings", "torch_dtype": "the model config's dtype",
    "gradient_accumulation_steps": "computed from the batch size and the device count",
    "save_total_limit": "every checkpoint kept",
}

# swift arguments where rlreg's command differs on purpose, with the reason
DELIBERATE: dict[str, str] = {
    "dataset": "rlreg trains on its convert stage's train split (data.source is their dataset)",
    "val_dataset": "rlreg validates on its convert stage's test split",
    "split_dataset_ratio": "rlreg's convert stage splits (data.test_size); swift gets --split_dataset_ratio 0",
    "output_dir": "rlreg writes swift's output into the sft stage's work dir",
    "add_version": "rlreg passes false: one output dir per stage run",
    "report_to": "rlreg reads swift's logging.jsonl into MLflow (--report_to none)",
    "eval_strategy": "rlreg evaluates on its test split every sft.eval_every steps",
}


def _theirs_default(key: str, theirs: dict[str, list[str]]) -> Any:
    """swift's value for an argument the user did not pass (some depend on others)."""
    if key == "learning_rate":  # ms-swift: 1e-5 for full fine-tuning, 1e-4 for tuners
        return 1e-5 if _one(theirs.get("tuner_type", ["lora"])) == "full" else 1e-4
    if key == "eval_steps":  # swift: eval_steps follows save_steps when unset
        return _one(theirs.get("save_steps", [SWIFT_DEFAULTS["save_steps"]]))
    return SWIFT_DEFAULTS.get(key, IMPLICIT)


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


def effective(theirs: dict[str, list[str]], key: str) -> Any:
    """The user's value of ``key`` (one string, or a list for multi-valued arguments), else swift's default."""
    if key in theirs:
        values = theirs[key]
        return values if key in ("dataset", "val_dataset", "target_modules") else _one(values)
    return _theirs_default(key, theirs)


def _number(text: Any) -> float | None:
    if isinstance(text, bool):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def same_arg(a: Any, b: Any) -> bool:
    """Equal as swift parses them: numbers by value (``1e-4`` = ``0.0001``), booleans by truth
    (``True`` = ``true``), lists element by element, anything else as strings."""
    a_list, b_list = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    if len(a_list) != len(b_list):
        return False
    for x, y in zip(a_list, b_list):
        nx, ny = _number(x), _number(y)
        if nx is not None and ny is not None:
            if nx != ny:
                return False
        elif str(x).lower() in ("true", "false") or str(y).lower() in ("true", "false"):
            if str(x).lower() != str(y).lower():
                return False
        elif str(x) != str(y):
            return False
    return True


def differing_args(ours: dict[str, list[str]], theirs: dict[str, list[str]]) -> dict[str, tuple[Any, Any]]:
    """Every argument either command passes whose effective value differs (swift's default for a
    side that does not pass it), except the ``DELIBERATE`` ones: ``{key: (ours, theirs)}``.
    An IMPLICIT default compares unequal to any value."""
    out = {}
    for key in sorted((set(ours) | set(theirs)) - set(DELIBERATE)):
        a, b = effective(ours, key), effective(theirs, key)
        if a is IMPLICIT and b is IMPLICIT:
            continue
        if a is IMPLICIT or b is IMPLICIT or not same_arg(a, b):
            out[key] = (a, b)
    return out


def _typed(text: Any) -> Any:
    """A YAML-typed value for the spec (``"16"`` -> 16, ``"1e-4"`` -> 0.0001, ``"True"`` -> True)."""
    if isinstance(text, list):
        return [_typed(t) for t in text]
    if not isinstance(text, str):
        return text
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    number = _number(text)
    return number if number is not None and text.lower() not in ("nan", "inf", "-inf", "infinity") else text


# swift argument -> (spec field, value converter); a converter returning None leaves the field unset
def _loss_scale(v: str) -> str | None:
    return {"default": "all_assistant", "last_round": "last_assistant"}.get(v)


def _schedule(v: str) -> str | None:
    return {"cosine": "cosine", "constant_with_warmup": "constant"}.get(v)


def _targets(v: list[str]) -> Any:
    return "all-linear" if v == ["all-linear"] else list(v)


SWIFT_TO_SPEC: dict[str, tuple[str, Any]] = {
    "torch_dtype": ("model.dtype", str),
    "max_length": ("sft.max_length", int),
    "truncation_strategy": ("sft.truncation", str),
    "loss_scale": ("sft.train_on", _loss_scale),
    "per_device_train_batch_size": ("sft.batch_size", int),
    "gradient_accumulation_steps": ("sft.grad_accum", int),
    "learning_rate": ("sft.lr", float),
    "weight_decay": ("sft.weight_decay", float),
    "lr_scheduler_type": ("sft.schedule", _schedule),
    "warmup_steps": ("sft.warmup_steps", int),
    "max_grad_norm": ("sft.grad_clip", float),
    "group_by_length": ("sft.group_by_length", lambda v: str(v).lower() == "true"),
    "seed": ("sft.seed", int),
    "save_steps": ("sft.save_every", int),
    "eval_steps": ("sft.eval_every", int),
    "model_type": ("sft.swift.model_type", str),
    "template": ("sft.swift.template", str),
}
LORA_TO_SPEC = {"lora_rank": ("r", int), "lora_alpha": ("alpha", float), "lora_dropout": ("dropout", float),
                "target_modules": ("target_modules", _targets)}
# arguments the mapping reads on its own (not through SWIFT_TO_SPEC)
HANDLED = {"tuner_type", "num_train_epochs", "max_steps", *LORA_TO_SPEC}


def import_sft_experiment(exp: SftExperimentDir, name: str, result: Any) -> dict[str, Any]:
    """The spec document of an SFT experiment directory (``result`` collects notes and unmapped keys)."""
    theirs = _their_args(exp, result)
    result.swift_args = theirs
    tags: dict[str, str] = {"origin": "hardtry", "hardtry.exp_dir": exp.root.name, "hardtry.kind": "sft"}
    model = effective(theirs, "model")
    if not isinstance(model, str) or not model:
        raise SpecError(f"{exp.config_path}: model: not set (the base model swift fine-tunes; add `model: PATH`)")
    doc: dict[str, Any] = {
        "name": name,
        "description": f"Imported from the hardtry SFT experiment directory {exp.root.name} (rlreg import; ms-swift).",
        "experiment": "hardtry",
        "tags": tags,
        "model": {"path": model},
        "sft": {"backend": "swift", "swift": {}},
    }
    doc["data"] = _data_section(theirs, result, tags)
    sft = doc["sft"]
    lora = _one(theirs.get("tuner_type", [SWIFT_DEFAULTS["tuner_type"]]))
    if lora == "lora":
        sft["lora"] = {}
        for key, (field_name, convert) in LORA_TO_SPEC.items():
            sft["lora"][field_name] = convert(effective(theirs, key))
    elif lora != "full":
        result.notes.append(f"tuner_type {lora}: no spec field (sft.lora is LoRA); passed through sft.swift.extra_args")
    epochs, steps = effective(theirs, "num_train_epochs"), _number(effective(theirs, "max_steps"))
    if steps is not None and steps > 0:  # transformers: max_steps > 0 wins over epochs
        sft["max_steps"] = int(steps)
    else:
        sft["epochs"] = float(epochs)
    for key, (path, convert) in SWIFT_TO_SPEC.items():
        value = effective(theirs, key)
        if value is IMPLICIT:
            continue
        if key in ("model_type", "template") and key not in theirs:
            continue
        converted = convert(value) if value is not None else None
        if converted is not None:
            _try_set(doc, path, converted)
    _validate(doc)
    _fill_extra_args(doc, theirs, result, tags)
    _other_files(exp, doc, result, tags)
    if not doc["sft"]["swift"]:
        doc["sft"].pop("swift")
    return doc


def _their_args(exp: SftExperimentDir, result: Any) -> dict[str, list[str]]:
    from registry.redact import is_secret_key, redact_obj

    argv = exp.argv()
    theirs = parse_argv(argv)
    for old, new in RENAMED.items():
        if old in theirs:
            theirs[new] = theirs.pop(old)
            result.notes.append(f"{old}: ms-swift 4 calls it --{new} (rlreg passes --{new}; 3.x configs say {old})")
    if "ENV" in exp.config:
        result.unmapped.append(f"{exp.config_path.name}: ENV = {redact_obj(exp.config['ENV'])!r} (environment for swift; "
                               "set it where rlreg runs)")
    if exp.command:
        for var, value in exp.command.env.items():
            if var == "NPROC_PER_NODE":
                continue
            shown = "***" if is_secret_key(var) else value
            result.unmapped.append(f"{exp.command.script}: {var}={shown} (launch environment; set it where rlreg runs)")
    return theirs


def _data_section(theirs: dict[str, list[str]], result: Any, tags: dict[str, str]) -> dict[str, Any]:
    datasets = effective(theirs, "dataset")
    if datasets is IMPLICIT or not datasets:
        raise SpecError("sft config: dataset: no training dataset (swift needs one; add `dataset: [path]`)")
    first, _, sample = datasets[0].partition("#")
    data: dict[str, Any] = {"source": first, "seed": int(_number(effective(theirs, "data_seed")) or 42)}
    data["max_samples"] = int(sample) if sample.isdigit() else None  # no #N: swift reads every record
    ratio = _number(effective(theirs, "split_dataset_ratio") if "split_dataset_ratio" in theirs else 0)
    if ratio and 0 < ratio < 1:
        data["test_size"] = ratio
    elif "val_dataset" not in theirs:
        result.notes.append("split_dataset_ratio 0 and no val_dataset: their run had no validation split; rlreg's "
                            "convert stage holds out data.test_size 0.05 for the eval loss")
    if len(datasets) > 1:
        result.unmapped.append(f"dataset: {datasets[1:]} (data.source is one file: only {datasets[0]} is imported)")
    if "val_dataset" in theirs:
        tags["hardtry.swift.val_dataset"] = " ".join(theirs["val_dataset"])
        result.unmapped.append(f"val_dataset = {theirs['val_dataset']} (rlreg validates on its convert stage's "
                               f"test split, test_size {data.get('test_size', 0.05)}; kept as tag hardtry.swift.val_dataset)")
    result.notes.append(f"data: swift's dataset {datasets[0]} becomes data.source; rlreg's convert stage samples "
                        "and splits it (same max_samples, test ratio and seed, its own RNG: the records can differ "
                        "from swift's #N sample and split_dataset_ratio split)")
    return data


def _fill_extra_args(doc: dict[str, Any], theirs: dict[str, list[str]], result: Any, tags: dict[str, str]) -> None:
    from registry.redact import is_secret_key

    extra: dict[str, Any] = {}
    for key in sorted(theirs):
        if is_secret_key(key):  # never into a spec file, a tag or the swift command MLflow records
            theirs.pop(key)
            result.unmapped.append(f"{key} (a secret) left out of the spec (give it to swift through its "
                                   "environment where rlreg runs, e.g. SWANLAB_API_KEY)")
        elif key in DELIBERATE:
            value = " ".join(theirs[key])
            tags[f"hardtry.swift.{key}"] = value[:500]
            result.notes.append(f"{key} = {value}: {DELIBERATE[key]} (kept as tag hardtry.swift.{key})")
        elif key not in SFT_ARGUMENTS:
            value = " ".join(theirs[key])
            tags[f"hardtry.swift.{key}"] = value[:500]
            result.unmapped.append(f"{key} = {value!r}: not an ms-swift {SWIFT_VERSION} `swift sft` argument (swift "
                                   f"would refuse to start; left out, kept as tag hardtry.swift.{key})")
    for _ in range(3):  # an extra arg can change what the spec passes (e.g. per_device_eval_batch_size)
        diff = {k: v for k, v in differing_args(_ours(doc), theirs).items() if k in SFT_ARGUMENTS}
        if not diff:
            break
        for key, (_, their_value) in diff.items():
            if their_value is IMPLICIT:
                continue
            extra[key] = _typed(their_value)
        doc["sft"]["swift"]["extra_args"] = dict(sorted(extra.items()))
        _validate(doc)
    left = differing_args(_ours(doc), theirs)
    for key, (ours, their_value) in left.items():
        if their_value is IMPLICIT:
            result.notes.append(f"{key}: not set in their config (swift: {IMPLICIT_WHY.get(key, 'derived at run time')}); "
                                f"the spec passes {ours!r}")
        elif key in SFT_ARGUMENTS:
            raise SpecError(f"imported spec: sft.swift: --{key} stays {ours!r}, theirs {their_value!r} (report this)")
    if not extra:
        doc["sft"]["swift"].pop("extra_args", None)
    for key in sorted(extra):
        if key not in theirs:
            why = "swift's default, which they left; rlreg's command passes another value"
        elif key in SWIFT_TO_SPEC or key in HANDLED:
            why = "the spec field cannot say it, or rlreg's command passes it differently"
        else:
            why = "no spec field"
        result.notes.append(f"{key} = {extra[key]!r}: sft.swift.extra_args ({why})")
    if "deepspeed" in extra and str(extra["deepspeed"]).endswith(".json"):
        result.notes.append(f"deepspeed = {extra['deepspeed']}: a file on their machine; the path must exist where swift runs")
    if "fsdp" in extra:
        result.notes.append("fsdp: swift's FSDP checkpoints are sharded (their merge script ran `accelerate "
                            "merge-weights`); rlreg's swift stage copies checkpoint-N as the model, so check that it "
                            "holds full weights (docs/models.md)")


def _other_files(exp: SftExperimentDir, doc: dict[str, Any], result: Any, tags: dict[str, str]) -> None:
    from registry.importer import _find
    from registry.importer.hydra_files import script_assignment

    eval_section, unmapped = eval_sections(_find(exp.files, "eval_config"), _find(exp.files, "vllm_config"))
    result.unmapped += unmapped
    if eval_section:
        doc["eval"] = eval_section
    for stem in exp.files:
        if not any(stem.startswith(p) for p in ("eval_config", "vllm_config")):
            result.unmapped.append(f"{exp.config_dir.name}/{stem}.yaml: not a file rlreg import reads for an SFT experiment")
    deepspeed = str(get_path(doc, "sft.swift.extra_args.deepspeed", ""))
    for rel in exp.other_files:
        if deepspeed and Path(deepspeed).name == Path(rel).name:
            result.notes.append(f"{rel}: the deepspeed config --deepspeed names (copy it to that path where swift runs)")
        else:
            result.unmapped.append(f"{rel}: not a file rlreg import reads")
    merge_scripts = sorted(s for s in exp.scripts if "merge" in Path(s).name)
    target = script_assignment({s: exp.scripts[s] for s in merge_scripts}, "TARGET_DIR") or \
        script_assignment({s: exp.scripts[s] for s in merge_scripts}, "OUTPUT_PATH")
    if merge_scripts:
        how = ("`swift export --merge_lora true` of the last checkpoint" if get_path(doc, "sft.lora") is not None
               else "the last checkpoint-N copied")
        result.notes.append(f"{', '.join(merge_scripts)}: rlreg's sft stage writes the merged model itself ({how}) "
                            "into its store as sft.model")
    if target:
        tags["hardtry.merge_target"] = target
        result.unmapped.append(f"merge target {target} (rlreg writes the merged model into its store; kept as tag "
                               "hardtry.merge_target)")
    if exp.results:
        category = get_path(doc, "eval.bfcl.test_category")
        column, accs = recorded_accuracies(exp.results, category)
        tags["hardtry.recorded_bfcl"] = f"{category or 'bfcl'} ({column}): {', '.join(accs)}"[:500]
        result.unmapped.append(f"eval5_results: {len(exp.results)} BFCL result CSV(s) ({column} "
                               f"{', '.join(accs) or 'unreadable'}) are not imported as runs (rlreg records its own "
                               "eval results; kept as tag hardtry.recorded_bfcl)")
    if (exp.root / "README.md").is_file():
        result.unmapped.append("README.md: not read (notes of the experiment)")
    nproc = exp.command.env.get("NPROC_PER_NODE") if exp.command else None
    if nproc and nproc.isdigit():
        doc["sft"]["swift"]["nproc_per_node"] = int(nproc)


def swift_args_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    """A spec document's ``swift sft`` arguments (for comparing two documents)."""
    return _ours(doc)


def _ours(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The spec's ``swift sft`` arguments, as runners/sft/swift.py builds them."""
    from registry.spec import Spec
    from runners.sft.swift import sft_argv

    spec = Spec.model_validate(doc)
    return parse_argv(sft_argv(spec.sft, model=spec.model.path, dtype=spec.model.dtype, train_jsonl="<train>",
                               val_jsonl="<val>", output_dir="<out>"))


def _try_set(doc: dict, path: str, value: Any) -> bool:
    from registry.importer import _try_set as try_set

    return try_set(doc, path, value)


def _validate(doc: dict) -> None:
    from registry.importer import _validate as validate

    validate(doc)
