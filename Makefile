# The two commands of the README.  Both set everything up first (idempotent).
.PHONY: setup demo test bench clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/yukkuri-nb demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m benchmarks

clean:
	rm -rf .venv out .pytest_cache
