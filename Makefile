# Two entry points for a fresh machine: `make run` (Dagster UI + daemon) and `make test`.
UV_VERSION := 0.13.8
DOCS_PORT ?= 8000
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif

.PHONY: run test check lint install screenshots docs

$(UV):
	python3 -m pip install --user --quiet "uv==$(UV_VERSION)"

# bytecode compiled up front (~25 s), the packages' and the project's own: where
# PYTHONDONTWRITEBYTECODE is set (as on this machine), nothing writes it later and every process
# compiled Dagster and MLflow again (CI without it: 2,479 s and two deadlines missed, against
# ~2,170 s), and the platform's own modules (0.4 CPU s of each process that loads the code location)
install: $(UV)
	$(UV) sync --locked --compile-bytecode
	$(UV) run --no-sync python -m compileall -q ml_assets resources sensors jobs serving

run: install
	$(UV) run ml-assets dev

# Lint, the layers, then every tier on both cores, the groups in the order tests/tiers.py gives,
# with line coverage of the product code in every process the suite starts but the benchmarks'
# and the live platform's (pyproject.toml: [tool.coverage]; docs/architecture/tests.md).
test: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports
	rm -rf .coverage-data
	$(UV) run coverage run -m pytest -n 2 --dist loadgroup --no-loadscope-reorder
	$(UV) run coverage combine -q
	$(UV) run coverage report --sort=cover

# The inner loop: lint and the unit tier without its slow tests (tests/tiers.py).
check: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports
	$(UV) run pytest -n 2 --dist loadgroup -m "unit and not slow"

lint: install
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

# The docs' screenshots (docs/screenshots/*.png), from the UI flows of tests/test_ui.py.
screenshots: install
	$(UV) run pytest tests/test_ui.py --screenshots docs/screenshots

# The docs site (mkdocs, Material theme) on http://127.0.0.1:$(DOCS_PORT), rebuilt on every
# change; another port: make docs DOCS_PORT=8001. The Reference pages are generated from the code.
docs: install
	NO_MKDOCS_2_WARNING=1 $(UV) run mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)
