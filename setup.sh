#!/usr/bin/env bash
# Set-up and the main job: install what is missing, build mlm (release), and fit the bundled
# example (lme4's sleepstudy, from HDF5), printing a summary like lme4's with parametric-bootstrap
# and profile-likelihood intervals.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
swift build -c release --product mlm
.build/release/mlm fit examples/sleepstudy.h5 --formula "Reaction ~ Days + (Days | Subject)" --bootstrap 500 --seed 1 --profile
