# Two commands do all set-up: `make demo` runs the real flow on the embedded sample slide, `make test` runs
# the tests. Both create the environment in .venv/ from constraints.txt (the pinned set) when it is missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast env lint clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	YOLO_OFFLINE=1 $(VENV)/bin/bmpipe demo --out out/demo

# The report's screenshot test and the review page's test (Playwright driving this Chromium) need headless
# Chromium: installed from Debian's packages when absent and possible (root, apt), otherwise those two test
# files skip and say so.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "chromium not found and not installable here: tests/test_report_browser.py and tests/test_review_browser.py will be skipped"
	YOLO_OFFLINE=1 PREFECT_HOME=$$(mktemp -d) $(VENV)/bin/python -m pytest -q

# Everyday work: the tests not marked slow (no end-to-end runs of the flow, no wheel build), in about 2 minutes.
test-fast: $(STAMP)
	YOLO_OFFLINE=1 PREFECT_HOME=$$(mktemp -d) $(VENV)/bin/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check bmpipe flows tests

clean:
	rm -rf out .pytest_cache
