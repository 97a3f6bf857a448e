# Two entry points: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast test-shuffled setup clean iac-tools

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# sagemaker first: it pins botocore, and resolving it after the rest backtracks for minutes.
	$(BIN)/pip install --quiet 'sagemaker==3.27.0'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/defectops demo

test: $(BIN)/.installed $(VENV)-iac/bin/checkov
	$(BIN)/pytest

# The inner loop: everything but the tests marked e2e (real training, engine runs, services; see tests/conftest.py).
test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not e2e" -q

# The inner loop in three random orders (pytest-randomly): a test that needs another's state fails here.
test-shuffled: $(BIN)/.installed
	for seed in 1 2 3; do $(BIN)/pytest -p randomly -p no:cacheprovider --randomly-seed=$$seed -m "not e2e" -q || exit 1; done

# checkov (Terraform policy checks) lives in its own venv: it pins an older boto3 than sagemaker needs.
$(VENV)-iac/bin/checkov:
	$(PYTHON) -m venv $(VENV)-iac
	$(VENV)-iac/bin/pip install --quiet 'checkov==3.3.30'

iac-tools: $(VENV)-iac/bin/checkov

clean:
	rm -rf data/raw data/augmented models reports deploy monitoring mlflow.db mlartifacts dvc.lock .kfp-local
