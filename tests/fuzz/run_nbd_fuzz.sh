#!/bin/bash
# Runs nbd_fuzz for a bounded time (default 60 s) from the seed corpus; fails on any crash,
# leak, hang or sanitizer report. See run_fuzz.sh.
#
# usage: tests/fuzz/run_nbd_fuzz.sh BUILD-DIR [SECONDS]
exec bash "$(dirname "$0")/run_fuzz.sh" nbd "$@"
