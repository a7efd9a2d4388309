#!/usr/bin/env bash
# Train the digits zoo: every zoo model x seeds 0, 1, 2 with one recipe and budget (`tiny`: 15
# epochs, batch 128, SGD + OneCycle, fp32), writing models/<base>.s<seed>.toml and .pt
# (cards name the device they were trained on). Runs are resumable: a killed script started
# again continues each run from its last epoch (RUNS/<card>/last.pt) and skips finished cards.
#
#   benchmarks/train_zoo.sh                    # CUDA, 5 runs at a time
#   DEVICE=cpu JOBS=1 benchmarks/train_zoo.sh  # a CPU (hours per model)
#   SEEDS="0" MODELS="ltpa-tiny" benchmarks/train_zoo.sh
#
# Environment: DEVICE (cuda), SEEDS ("0 1 2"), MODELS (all five bases below, by architecture
# name or gwi-resnet-tiny), JOBS (parallel runs, 5), RUNS (runs/zoo), PYTHON (python3),
# MGBENCH_ZOO (where the cards go; default models/), EXTRA (more `mgbench train` options, for a
# smoke test only: EXTRA="--epochs 1 --limit 256" changes the budget).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-"0 1 2"}
MODELS=${MODELS:-"resnet-tiny mgnet-tiny ltpa-tiny tdam-tiny gwi-resnet-tiny"}
JOBS=${JOBS:-5}
RUNS=${RUNS:-runs/zoo}
PYTHON=${PYTHON:-python3}
ZOO=${MGBENCH_ZOO:-models}
EXTRA=${EXTRA:-}

# One line per run: card name, then the `mgbench train` arguments that differ between models.
plan() {
    for model in $MODELS; do
        case $model in
            gwi-resnet-tiny) args="--model resnet-tiny --method gwi" ;;
            resnet-tiny | mgnet-tiny | ltpa-tiny | tdam-tiny) args="--model $model" ;;
            *) echo "train_zoo.sh: unknown zoo model $model" >&2; exit 2 ;;
        esac
        for seed in $SEEDS; do
            echo "$model.digits.s$seed $seed $args"
        done
    done
}

train_one() {
    local card=$1 seed=$2
    shift 2
    if [[ -f "$ZOO/$card.toml" ]]; then
        echo "$card: card exists, skipped"
        return 0
    fi
    mkdir -p "$RUNS"
    # Two CPU threads per run: the digits augmentation and loading run in the training process.
    OMP_NUM_THREADS=2 "$PYTHON" -m mgbench train "$@" --data digits --recipe tiny --seed "$seed" \
        --device "$DEVICE" --no-amp --out "$RUNS/$card" --card "$card" $EXTRA > "$RUNS/$card.log" 2>&1 \
        && echo "$card: $(grep -o 'test [0-9.]*' "$RUNS/$card.log" | tail -1)" \
        || { echo "$card: FAILED, see $RUNS/$card.log" >&2; return 1; }
}
export -f train_one
export DEVICE RUNS PYTHON ZOO EXTRA

plan > /dev/null  # unknown names fail here, before anything runs
plan | xargs -P "$JOBS" -L 1 bash -c 'train_one "$@"' _
