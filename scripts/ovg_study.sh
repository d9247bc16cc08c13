#!/usr/bin/env bash
# The spectral-collapse / OVG benchmark (docs/results.md, "Spectral collapse and OVG"): trains the
# two multi-domain runs (EDM and DDIM, configs/edges2shoes_two_domain.py) and the FSS photo run
# of the phi-PD study (configs/phipd_study.py:fss0), then evaluates every method.
#
#   bash scripts/ovg_study.sh [RUNS_DIR] [OUT_DIR] [CONFIG_OPTION]
#
# CONFIG_OPTION is the two-domain config's option: cpu (default; 32 px, 2 CPU cores) or '' (the
# accelerator variant, 64 px). Rerunning skips finished runs (train.py resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/ovg}
out=${2:-docs/results/ovg_study}
option=${3-cpu}
python=${PYTHON:-python}
sep=${option:+,}
tag=${option:-full}
"$python" train.py --config "configs/edges2shoes_two_domain.py${option:+:$option}" --workdir "$runs/edm_$tag"
"$python" train.py --config "configs/edges2shoes_two_domain.py:${option}${sep}ddim" --workdir "$runs/ddim_$tag"
# phi-PD rows: the 32-px FSS run of the phi-PD study, or the 64-px FSS photo run.
phipd_config=configs/edges2shoes_phipd.py
if [[ $option == *cpu* ]]; then phipd_config=configs/phipd_study.py:fss0; fi
"$python" train.py --config "$phipd_config" --workdir "$runs/phipd_fss0_$tag"
"$python" evaluate.py --mode inversion --workdirs "$runs/edm_$tag,$runs/ddim_$tag" \
    --phipd_workdirs "$runs/phipd_fss0_$tag" --num 200 --out_dir "$out"
