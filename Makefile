# docker-credential-icr — developer and install targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# `make install`: a private venv, and a launcher on PATH (works where system pip is
# "externally managed", e.g. Debian 12+, Ubuntu 23.04+, Homebrew Python).
PREFIX ?= $(HOME)/.local
INSTALL_VENV ?= $(PREFIX)/share/docker-credential-icr/venv
BINDIR ?= $(PREFIX)/bin
# Message catalogs (src/docker_credential_icr/i18n.py): the .po files are committed; the .mo
# files compiled from them (with Babel, from the dev venv) are build outputs, git-ignored,
# shipped in the wheel and the binary.
LOCALE := src/docker_credential_icr/locale
DOMAIN := docker-credential-icr
MO_FILES := $(patsubst %.po,%.mo,$(wildcard $(LOCALE)/*/LC_MESSAGES/$(DOMAIN).po))
PYBABEL := $(VENV)/bin/pybabel

.PHONY: all venv test lint install uninstall clean binary bench dist demo catalogs check-catalogs soak figures

all: test

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat editable mode: a plain path entry, no import hook slowing every start
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.stamp $(MO_FILES)

$(LOCALE)/%/LC_MESSAGES/$(DOMAIN).mo: $(LOCALE)/%/LC_MESSAGES/$(DOMAIN).po $(VENV)/.stamp
	$(PYBABEL) -q compile -D $(DOMAIN) -l $* -i $< -o $@

# After changing messages: extract them (messages.pot), merge them into every .po (new or
# changed ones then need translating; `make check-catalogs` lists them), compile the .mo.
# A new language: $(PYBABEL) init -D $(DOMAIN) -i $(LOCALE)/messages.pot -d $(LOCALE) -l LL
catalogs: $(VENV)/.stamp
	$(PYBABEL) -q extract --no-default-keywords -k _ --add-location=file --sort-by-file \
	  --project=$(DOMAIN) --copyright-holder="the $(DOMAIN) authors" --version=$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) \
	  -o $(LOCALE)/messages.pot src/docker_credential_icr
	$(PYBABEL) -q update --ignore-obsolete -D $(DOMAIN) -i $(LOCALE)/messages.pot -d $(LOCALE)
	$(PYBABEL) -q compile -D $(DOMAIN) -d $(LOCALE)

# Every message translated (none fuzzy) in every language, placeholders intact.
check-catalogs: venv
	$(PY) -m pytest -q tests/i18n/test_catalogs.py

# The README's first command: local stand-ins for IAM and ICR, a private dockerd, push and pull
# through the helper in every mode (demo/run installs docker.io, docker-registry, skopeo if missing).
demo:
	@MAKE="$(MAKE)" PYTHON="$(PYTHON)" PY="$(PY)" demo/run $(DEMO_ARGS)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The full soak (make test runs it with 40 processes) and the README's Reliability figures.
soak: venv
	SOAK_PROCESSES=200 $(PY) -m pytest -q -m soak tests/hardening

figures: venv
	SOAK_PROCESSES=200 HARDENING_FIGURES=tests/hardening/FIGURES.md $(PY) -m pytest -q tests/hardening

lint: venv
	$(PY) -m ruff check src tests bench/startup bench/tokens packaging

# The PyInstaller build: a clean build venv under build/ (runtime deps + PyInstaller
# only), the spec in packaging/, a smoke test. Leaves dist/bin/docker-credential-icr,
# a link into the onedir bundle dist/docker-credential-icr/ (see bench/RESULTS.md).
BINARY := dist/bin/docker-credential-icr
$(BINARY): pyproject.toml $(wildcard packaging/*.py packaging/*.spec src/docker_credential_icr/*.py) $(MO_FILES)
	$(PYTHON) packaging/build.py

binary: $(BINARY)

# Start-up benchmark (bench/RESULTS.md): the console script and the binary against
# `python -c pass` of the same interpreter, and a Go helper when installed.
bench: venv binary
	$(PY) bench/startup $(BENCH_ARGS)

# Release artefacts in dist/: sdist, wheel, the binary bundle as a tar.gz, SHA256SUMS.
dist: binary
	$(PYTHON) packaging/dist.py

install: $(MO_FILES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "docker-credential-icr needs Python >= 3.11 (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv --clear $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install -q --upgrade pip
	$(INSTALL_VENV)/bin/python -m pip install -q .
	mkdir -p $(BINDIR)
	# A launcher running the venv's python with -I -S (isolated, no site: ~2 ms less per
	# start), not a link to pip's wrapper: packaging/launcher.py says why.
	$(INSTALL_VENV)/bin/python packaging/launcher.py $(BINDIR)/docker-credential-icr
	@echo
	@echo "Installed $(BINDIR)/docker-credential-icr (private venv: $(INSTALL_VENV))."
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "Add $(BINDIR) to your PATH, e.g.: export PATH=\"$(BINDIR):\$$PATH\"";; esac
	@echo "Next, route the ICR hosts to it in ~/.docker/config.json (keeps every other key, makes a backup):"
	@echo "  $(BINDIR)/docker-credential-icr configure-docker      # undo: ... configure-docker --uninstall"
	@echo "Then: export IBMCLOUD_API_KEY=... (or docker login -u iamapikey us.icr.io)"
	@echo "Check: docker-credential-icr doctor      Remove the program: make uninstall"

uninstall:
	rm -f $(BINDIR)/docker-credential-icr
	rm -rf $(dir $(INSTALL_VENV))
	@echo "Removed the helper; your stored credentials stay until you run docker logout."

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache $(MO_FILES)
