#!/usr/bin/env bash
# Create .venv-bfcl with the BFCL harness (bfcl-eval), kept out of the project's own environment:
# bfcl-eval pins numpy 1.26.4 and pulls a dozen model-provider SDKs.
#
#   scripts/setup-bfcl-venv.sh            # full install (GPU server): bfcl-eval with all its deps
#   scripts/setup-bfcl-venv.sh --light    # CPU box: no sentence-transformers/faiss (they pull torch;
#                                         # only the memory/agentic categories need them) + transformers
#                                         # for BFCL's tokenizer loading
# Env: BFCL_VENV (default .venv-bfcl), BFCL_EVAL_SPEC (default "bfcl-eval==2026.3.23"),
#      PYTHON (interpreter for the venv, default python3; bfcl-eval needs >= 3.10).
# The eval spec then uses `bfcl.bfcl_command: .venv-bfcl/bin/bfcl` (the default).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BFCL_VENV:-.venv-bfcl}"
SPEC="${BFCL_EVAL_SPEC:-bfcl-eval==2026.3.23}"
PY="${PYTHON:-python3}"
LIGHT=0
[[ "${1:-}" == "--light" ]] && LIGHT=1

"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
if [[ $LIGHT == 1 ]]; then
  "$VENV/bin/pip" install --quiet --no-deps "$SPEC"
  # bfcl-eval's requirements minus sentence-transformers, faiss-cpu (torch) and the optional extras
  "$VENV/bin/pip" install --quiet requests tqdm "numpy==1.26.4" pandas huggingface_hub "pydantic>=2.8.2" \
    "python-dotenv>=1.0.1" "tree_sitter==0.21.3" "tree-sitter-java==0.21.0" "tree-sitter-javascript==0.21.4" \
    "openai>=1.86.0" "mistralai==1.7.0" "anthropic>=0.75.0" "cohere==5.18.0" "typer>=0.12.5" "tabulate>=0.9.0" \
    "datamodel-code-generator==0.25.7" "google-genai>=1.52.0" qwen-agent "mpmath==1.3.0" "tenacity>=8.5.0" \
    "writer-sdk>=2.1.0" overrides boto3 beautifulsoup4 html2text "rank_bm25==0.2.2" google-search-results \
    "networkx==3.3" "filelock==3.20.0" "transformers>=4.45" sentencepiece soundfile
else
  "$VENV/bin/pip" install --quiet "$SPEC" "transformers>=4.45"
fi
"$VENV/bin/bfcl" --help > /dev/null  # imports every handler: fails loudly if a dependency is missing
# (`bfcl version` itself is broken in bfcl-eval 2026.3.23: it looks up a package named "bfcl")
echo "BFCL ready: $VENV/bin/bfcl"
