#!/bin/sh
# demo.sh - `make demo`: runs swerve on bundled example data.
# Grows with the project: each stage that exists runs for real.
set -e
BUILD=${BUILD:-build}
SWERVE="$BUILD/swerve"
echo "== swerve demo"
"$SWERVE" --version
