"""``eval``: tool-call evaluation with repeats (builtin) or BFCL against a vLLM server.

Accuracies are fractions in [0, 1] everywhere (BFCL's percent columns are divided by 100), so the
two backends and ``rlreg compare`` speak one unit. See docs/eval.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from registry.spec.base import MAX_BATCH, MAX_RECORDS, MAX_TEMPERATURE, MAX_TIMEOUT_S, MAX_TOKENS, SEED_MAX, SpecModel


class BfclDataSpec(SpecModel):
    """A BFCL question/answer file pair, scored in-process with BFCL's AST matching rules
    (single-turn Python categories: simple_python, multiple, parallel, parallel_multiple, live_*)."""

    questions: str | None = Field(
        None, description="BFCL question file (JSON lines, e.g. BFCL_v4_simple_python.json). $VAR expanded."
    )
    answers: str | None = Field(
        None, description="Its answer file; default = possible_answer/<same name> next to `questions`."
    )
    category: str | None = Field(
        None,
        description="Instead of files: read BFCL_v4_<category>.json and its answers straight out of the "
        "bfcl-eval wheel (nothing is installed).",
    )
    wheel: str | None = Field(
        None,
        description="The bfcl-eval wheel for `category`; default $RLREG_BFCL_WHEEL, then "
        ".cache/bfcl/bfcl_eval-*.whl (`pip download bfcl-eval --no-deps -d .cache/bfcl`).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> BfclDataSpec:
        if (self.questions is None) == (self.category is None):
            raise ValueError("set exactly one of `questions` (a BFCL file) or `category` (read from the wheel)")
        if self.answers is not None and self.questions is None:
            raise ValueError("`answers` pairs with `questions`; a wheel `category` brings its own answers")
        return self


class BfclSpec(SpecModel):
    """The user's real path: `vllm serve` + `bfcl generate` + `bfcl evaluate` (needs a GPU for vLLM)."""

    test_category: str = Field("multi_turn_base", description="BFCL test category (or comma-separated list).")
    test_ids: list[str] = Field(
        default_factory=list,
        description="Only these BFCL record ids (e.g. a smoke run: [multi_turn_base_0, multi_turn_base_1]); "
        "written to test_case_ids_to_generate.json and run with --run-ids / --partial-eval. The categories "
        "come from the ids and `test_category` is ignored. Scores are then over these ids only. At least "
        "2 ids: `bfcl evaluate` (2026.3.23) crashes computing a latency std over one record.",
    )
    model_name: str = Field(
        "Qwen/Qwen3-4B-Instruct-2507-FC",
        description="BFCL model registry name (`bfcl models`): picks BFCL's handler, i.e. its prompt "
        "format and output parser. The weights come from the evaluated model directory.",
    )
    base_url: str | None = Field(
        None,
        description="Use an existing OpenAI-compatible endpoint (e.g. http://gpu1:8000) instead of starting "
        "vLLM; it must serve the model under its local path (BFCL sends that as the model name).",
    )
    bfcl_command: str = Field(
        ".venv-bfcl/bin/bfcl",
        description="The `bfcl` executable (scripts/setup-bfcl-venv.sh creates .venv-bfcl); $VAR expanded.",
    )
    vllm_command: str = Field("vllm", description="The `vllm` executable (e.g. .venv-vllm/bin/vllm).")
    host: str = Field("127.0.0.1", description="Interface the started vLLM server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port for the vLLM server.")
    tensor_parallel_size: int = Field(1, le=64, ge=1, description="vllm serve --tensor-parallel-size")
    dtype: str = Field("bfloat16", description="vllm serve --dtype")
    max_model_len: int = Field(16384, le=MAX_TOKENS, ge=256, description="vllm serve --max-model-len")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm serve --gpu-memory-utilization")
    tool_call_parser: str = Field("hermes", description="vllm serve --tool-call-parser (with --enable-auto-tool-choice).")
    extra_vllm_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments, passed as-is.")
    startup_timeout_s: int = Field(900, le=MAX_TIMEOUT_S, ge=1, description="Seconds to wait for GET /v1/models to answer.")
    temperature: float = Field(0.001, le=MAX_TEMPERATURE, ge=0, description="bfcl generate --temperature (BFCL's default 0.001).")
    num_threads: int = Field(8, le=1024, ge=1, description="bfcl generate --num-threads (concurrent requests per repeat).")
    repeat_timeout_s: int = Field(7200, le=MAX_TIMEOUT_S, ge=1, description="Seconds one repeat (generate + evaluate) may take.")
    allow_failed_repeats: int = Field(
        0, le=100, ge=0,
        description="How many repeats may fail while the stage still succeeds (the aggregate then uses the "
        "others and `eval/repeats_failed` says so). Default 0: any failed repeat fails the stage, after "
        "every finished repeat has been logged.",
    )

    @model_validator(mode="after")
    def _two_ids(self) -> BfclSpec:
        if len(self.test_ids) == 1:
            raise ValueError("test_ids needs at least 2 ids: `bfcl evaluate` crashes computing a latency "
                             "std over one record (add a second id)")
        return self


class EvalSpec(SpecModel):
    backend: Literal["builtin", "bfcl"] = Field("builtin", description="`builtin` transformers or `bfcl` + vLLM.")
    model: str | None = Field(
        None,
        description="Model to evaluate: a path or @spec reference. Default: the output of this run's merge, "
        "train or sft stage (first found), else model.path.",
    )
    bfcl_data: BfclDataSpec | None = Field(
        None, description="Builtin backend: evaluate on a BFCL question/answer pair instead of convert's test split."
    )
    repeats: int = Field(5, ge=1, le=100, description="Independent repeats (distinct seeds) for mean and CI.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the Student-t interval over repeats.")
    max_samples: int | None = Field(None, le=MAX_RECORDS, ge=1, description="Evaluate at most this many test records (the first ones).")
    batch_size: int = Field(16, le=MAX_BATCH, ge=1, description="Prompts per generation batch.")
    do_sample: bool = Field(True, description="Sample (repeats differ) or greedy (repeats are identical).")
    temperature: float = Field(0.7, le=MAX_TEMPERATURE, gt=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(256, le=MAX_TOKENS, ge=1, description="Generation length cap.")
    max_prompt_length: int = Field(4096, le=MAX_TOKENS, ge=8, description="Prompts longer than this (tokens) are cut from the left.")
    seed: int = Field(
        1234, ge=0, le=SEED_MAX,
        description="Base sampling seed; repeat r uses seed + r. Unset in a spec: the spec's top-level `seed`.",
    )
    bfcl: BfclSpec = Field(default_factory=BfclSpec, description="Settings for backend: bfcl.")

    @model_validator(mode="after")
    def _data_matches_backend(self) -> EvalSpec:
        if self.backend == "bfcl" and self.bfcl_data is not None:
            raise ValueError(
                "`bfcl_data` feeds the builtin backend; with backend: bfcl the category is bfcl.test_category"
            )
        if self.backend == "bfcl" and self.max_samples is not None:
            raise ValueError(
                "`max_samples` applies to the builtin backend; with backend: bfcl list record ids in bfcl.test_ids"
            )
        return self
