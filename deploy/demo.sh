#!/usr/bin/env bash
# The main job, run by `make demo` after set-up. Prints progress; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n\033[1m[demo %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
OUT=${MIXSWEEP_DEMO_DIR:-runs/demo}
OS=tests/fixtures/openseek
mkdir -p "$OUT"

step "the OpenSeek-Small-v1 baseline mixture, 84 files in 79 domains (per group; 'mixsweep mixture show --by file' lists every file)"
mixsweep mixture show "$OS/OpenSeek-Small-v1-Baseline/config_deepseek_v3_1_4b.yaml" --catalog "$OS/pretrain_100B_files_tokens.csv" --by group

step "a mixture set per group, split over the 84 files by tokens, written as an OpenSeek experiment + task config"
cat > "$OUT/code_math_heavy.yaml" <<'YAML'
name: code-math-heavy
weights:
  CC-EN: 20
  CC-EN-Synth: 5
  CC-ZH: 10
  Code: 15
  Code-Synth: 10
  Math: 15
  Math-Synth: 10
  Arxiv-Synth: 10
  Pes2o: 5
YAML
mixsweep mixture convert "$OUT/code_math_heavy.yaml" --to openseek \
  --template "$OS/OpenSeek-Small-v1-Baseline/train/train_deepseek_v3_1_4b.yaml" \
  --catalog "$OS/pretrain_100B_files_tokens.csv" --out "$OUT/OpenSeek-code-math-heavy"
mixsweep mixture show "$OUT/OpenSeek-code-math-heavy/config_deepseek_v3_1_4b.yaml" --catalog "$OS/pretrain_100B_files_tokens.csv" --by group

step "the same mixture as Megatron's --data-path argument (first 300 characters)"
mixsweep mixture convert "$OUT/OpenSeek-code-math-heavy/config_deepseek_v3_1_4b.yaml" --to megatron --out "$OUT/code_math_heavy.data_path.txt"
head -c 300 "$OUT/code_math_heavy.data_path.txt"; echo " ..."
step "the demo corpus: 8 domains of real text (Python, sympy, Debian packages) as Megatron indexed datasets (skipped when up to date)"
mixsweep data prepare --demo
mixsweep data blend --corpus runs/data/demo --weights code=7,math-code=5,en-tech=4,en-lit=3,en-quotes=2,latex=1.5,zh-man=1,zh-poetry=0.5 --samples 100k --out "$OUT/blend"

step "the local stack: Prefect server + process worker, MLflow server, on loopback (reused when already up)"
mixsweep up
eval "$(mixsweep env)"

step "the demo sweep, started as users start one: prefect deployment run 'sweep/demo' (3 rounds x 4 MoE proxies; ~10 min on 2 cores)"
echo "watch it in the Prefect UI ${PREFECT_API_URL%/api} and compare the mixtures in the MLflow UI $MLFLOW_TRACKING_URI"
prefect deployment run 'sweep/demo' --watch --watch-timeout 3600

step "the leaderboard and the recommended mixture (exported as YAML, Megatron data_path and an OpenSeek task config)"
mixsweep results deploy/specs/demo.yaml

step "demo done: the stack keeps running for the UIs (Prefect ${PREFECT_API_URL%/api}, MLflow $MLFLOW_TRACKING_URI); 'mixsweep down' stops it"
