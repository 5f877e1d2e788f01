# The two commands of the README.  Both set everything up first (idempotent).
.PHONY: setup demo engine-demo test bench clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/yukkuri-nb make-video --out out --minutes 0.5

engine-demo: setup
	.venv/bin/yukkuri-nb demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m benchmarks

clean:
	rm -rf .venv out .pytest_cache
