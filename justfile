# Recipes for Sigrelay. Run them through ./dev (which makes the virtualenv
# and installs everything first): ./dev up, ./dev test, ./dev bench …

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# list the recipes
default:
    @just --list

# start NATS, Postgres and every service; Ctrl-C stops what it started
up *ARGS:
    sigrelay up {{ARGS}}

# the demo: everything up, 1,000 users, scripted channel traffic, a summary; then exits
demo *ARGS:
    sigrelay demo {{ARGS}}

# run one service in the foreground, e.g. `./dev service relay`
service NAME:
    sigrelay service {{NAME}}

# apply the event-store migrations
migrate:
    sigrelay migrate

# lint, format check, type check, then the whole test suite (real NATS and Postgres)
test *ARGS: lint typecheck
    pytest {{ARGS}}

# lint and format check (no changes)
lint:
    ruff check .
    ruff format --check .

# type check the packages
typecheck:
    mypy

# format and fix what ruff can
fmt:
    ruff format .
    ruff check --fix .

# benchmarks (all, or by name: `./dev bench eventstore`); record results in docs/BENCHMARKS.md
bench *NAMES:
    sigrelay bench {{NAMES}}
