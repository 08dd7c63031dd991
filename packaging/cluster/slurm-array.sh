#!/usr/bin/env bash
# Runs every recipe of a folder as one Slurm job array: one recipe per array task, one GPU each.
#
#   ls recipes/*.toml | wc -l                 # N recipes
#   sbatch --array=0-$((N-1))%4 packaging/cluster/slurm-array.sh recipes results
#
# Each task writes results/<recipe name>/ (edited checkpoint, metrics.json, report.md). Lethe
# comes from the installed package, or from the container through Apptainer:
#   apptainer build lethe.sif docker-archive://lethe.tar   (after `podman save -o lethe.tar lethe`)
#   LETHE="apptainer run --nv lethe.sif" sbatch --array=… packaging/cluster/slurm-array.sh …
# Exit codes are Lethe's: 3 (an audit check failed) and 4 (inconclusive) still wrote the result,
# so sacct shows which concepts did not pass.
#SBATCH --job-name=lethe
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=lethe-%A_%a.log
set -euo pipefail

recipes=${1:?give the folder of recipes}
results=${2:?give the folder for results}
: "${SLURM_ARRAY_TASK_ID:?submit this with sbatch --array}"

# The same sorted list in every task, so task i always runs the i-th recipe.
mapfile -t all < <(find "$recipes" -maxdepth 1 -name '*.toml' | sort)
recipe=${all[$SLURM_ARRAY_TASK_ID]:?no recipe number $SLURM_ARRAY_TASK_ID in $recipes (${#all[@]} recipes)}
name=$(basename "$recipe" .toml)

mkdir -p "$results"
exec ${LETHE:-lethe} run "$recipe" --out "$results/$name"
