# docker-credential-icr — developer and install targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# `make install`: a private venv, and a link on PATH (works where system pip is
# "externally managed", e.g. Debian 12+, Ubuntu 23.04+, Homebrew Python).
PREFIX ?= $(HOME)/.local
INSTALL_VENV ?= $(PREFIX)/share/docker-credential-icr/venv
BINDIR ?= $(PREFIX)/bin

.PHONY: all venv test lint install uninstall clean

all: test

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat editable mode: a plain path entry, no import hook slowing every start
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.stamp

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check src tests bench

install:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "docker-credential-icr needs Python >= 3.11 (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv --clear $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install -q --upgrade pip
	$(INSTALL_VENV)/bin/python -m pip install -q .
	mkdir -p $(BINDIR)
	ln -sf $(INSTALL_VENV)/bin/docker-credential-icr $(BINDIR)/docker-credential-icr
	@echo
	@echo "Installed $(BINDIR)/docker-credential-icr (private venv: $(INSTALL_VENV))."
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "Add $(BINDIR) to your PATH, e.g.: export PATH=\"$(BINDIR):\$$PATH\"";; esac
	@echo "Route ICR hosts to it in ~/.docker/config.json, e.g.:"
	@echo '  {"credHelpers": {"icr.io": "icr", "us.icr.io": "icr", "de.icr.io": "icr"}}'
	@echo "Then: export IBMCLOUD_API_KEY=... (or docker login -u iamapikey us.icr.io)"
	@echo "Undo: make uninstall"

uninstall:
	rm -f $(BINDIR)/docker-credential-icr
	rm -rf $(dir $(INSTALL_VENV))
	@echo "Removed the helper; your stored credentials stay until you run docker logout."

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
