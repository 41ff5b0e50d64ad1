"""``data``: the convert stage (OpenAI-messages JSON/JSONL -> verl parquet)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from registry.spec.base import MAX_BATCH, MAX_RECORDS, SEED_MAX, SpecModel


class SyntheticDataSpec(SpecModel):
    """A deterministic synthetic tool-calling dataset (see runners/synth_data.py)."""

    num_records: int = Field(400, ge=1, le=10_000_000, description="How many records to generate.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Generator seed; same seed -> identical records.")
    tool_response_fraction: float = Field(
        0.25, ge=0.0, le=1.0,
        description="Fraction of records that contain an earlier tool call + tool-response turn.",
    )
    two_call_fraction: float = Field(
        0.2, ge=0.0, le=1.0,
        description="Fraction of records whose answer holds two tool calls (two requests in one turn).",
    )
    distractor_tools: int = Field(
        2, ge=0, le=8,
        description="Tools offered beyond the needed ones (the model must pick by name); fewer make shorter prompts.",
    )
    multi_turn_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Fraction of multi-turn tasks whose answer needs a tool's result: the user names a "
        "handle, the model must call `find_account`, read the account code in its answer and call "
        "`list_orders` with it. The record keeps the lookup call and the tool turn (what "
        "runners/demo_tools.py returns, so replayed and executed answers agree) for replay and for SFT "
        "on both assistant turns; multi-turn rollouts start at the first assistant turn. 0 = none (the "
        "other records do not change).",
    )

    wording: Literal["prose", "quoted", "keyed"] = Field(
        "prose",
        description="How the user turn writes the values the call must copy. `prose` (every record as "
        "before): `in Paris`; `quoted`: `in \"Paris\"` (the value's tokens are the call's); `keyed`: "
        "`in \"city\": \"Paris\"` (the value follows the call's own key tokens, so a tiny model copies "
        "by matching the key). The byte-level tokenizer splits ` Paris` in prose and `Paris` after a "
        "quote into different tokens, which is why a tiny model learns prose copies last "
        "(docs/training.md).",
    )

    tasks: list[Literal["weather", "currency", "alarm", "flights", "email", "translate", "orders_chain",
                        "landmark_chain"]] | None = Field(
        None, min_length=1,
        description="Which templates records are drawn from (null = all; the default keeps every record as "
        "before). Single-call: weather, currency, alarm, flights, email, translate; chained (used by "
        "`tool_response_fraction`): orders_chain (copies a 3-4 digit user id from the tool turn), "
        "landmark_chain (copies a city). currency, alarm, flights and orders_chain carry multi-digit "
        "numbers or dates, which a tiny model copies worst (docs/training.md).",
    )

    @model_validator(mode="after")
    def _fractions(self) -> SyntheticDataSpec:
        if self.tasks is not None:
            chain = [t for t in self.tasks if t.endswith("_chain")]
            single = [t for t in set(self.tasks) if not t.endswith("_chain")]
            if self.tool_response_fraction > 0 and not chain:
                raise ValueError("tool_response_fraction > 0 needs orders_chain or landmark_chain in `tasks` "
                                 "(add one, or set tool_response_fraction: 0)")
            if self.two_call_fraction > 0 and len(single) < 2:
                raise ValueError("two_call_fraction > 0 needs at least two single-call tasks in `tasks` "
                                 "(add one, or set two_call_fraction: 0)")
            if not single and self.tool_response_fraction + self.two_call_fraction + self.multi_turn_fraction < 1:
                raise ValueError("`tasks` has no single-call task but some records would be single-call ones "
                                 "(add one, or make the fractions sum to 1)")
        if self.tool_response_fraction + self.two_call_fraction + self.multi_turn_fraction > 1.0:
            raise ValueError(
                "tool_response_fraction + two_call_fraction + multi_turn_fraction must be at most 1 "
                "(lower one of them)"
            )
        return self


class DataSpec(SpecModel):
    """Convert stage: OpenAI-style ``messages`` records -> ``train.parquet`` + ``test.parquet``
    with verl's columns (data_source, prompt, ability, reward_model, extra_info)."""

    source: str | None = Field(
        None,
        description="Path to a JSON (list of records) or JSONL file of records with `messages` "
        "(and optional `tools`); relative paths are resolved from the project root. "
        "Environment variables ($VAR) are expanded at run time.",
    )
    synthetic: SyntheticDataSpec | None = Field(
        None, description="Generate a synthetic tool-calling dataset instead of reading `source`."
    )
    format: Literal["auto", "json", "jsonl"] = Field(
        "auto", description="Input format; `auto` decides by extension (.jsonl) or first byte."
    )
    max_samples: int | None = Field(
        1000, le=MAX_RECORDS, ge=1, description="Keep at most this many valid records (after shuffling); null = all."
    )
    shuffle: bool = Field(True, description="Shuffle records (seeded) before splitting.")
    split: Literal["rlreg", "hardtry"] = Field(
        "rlreg",
        description="How records are chosen and split. `rlreg`: with `shuffle`, a seeded "
        "random.sample of max_samples records whose first ceil(test_size*k) are test; without, the "
        "first k records with the last ceil(test_size*k) as test; rows in input order. `hardtry`: the "
        "user's converter (Hugging Face datasets): the first max_samples records (after "
        "ds.shuffle(seed) when `shuffle`), then train_test_split(test_size, seed) — a numpy "
        "default_rng(seed) permutation, its first ceil(test_size*k) rows test — rows in permutation "
        "order; holds the k chosen rows in memory.",
    )
    test_size: float = Field(0.05, gt=0.0, lt=1.0, description="Fraction of records in test.parquet.")
    seed: int = Field(42, ge=0, le=SEED_MAX, description="Seed for shuffle and split; same input + seed -> identical parquet.")
    data_source: str = Field("hardgen", description="Value of the `data_source` column (verl routes rewards by it).")
    ability: str = Field("function_call", description="Value of the `ability` column.")
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="Bad records (no messages, last turn not assistant, broken JSON): `fail` stops "
        "with the file and record index; `skip` drops them and logs a count and a sample.",
    )
    tokenizer: str | None = Field(
        None, description="Optional local tokenizer directory for token-length statistics."
    )
    tools_in_system_prompt: bool = Field(
        False,
        description="Also write each record's `tools` into its system message as the Qwen/Hermes "
        "`# Tools ... <tools>...</tools>` block (a system message is added if there is none), as "
        "the user's hardgen converter did. Needed when the trainer renders `prompt` without "
        "`tools=` (verl's RLHFDataset); `extra_info.tools` is kept either way.",
    )
    batch_size: int = Field(
        2000, le=MAX_BATCH, ge=1, description="Records held in memory at once while streaming the input."
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.source is None) == (self.synthetic is None):
            raise ValueError(
                "set exactly one of `source` (a JSON/JSONL file) or `synthetic` (generated data)"
            )
        return self
