"""cffi extension build: every `c_ext/build_*.py` defines an `ffibuilder`."""

from pathlib import Path

from setuptools import setup

setup(cffi_modules=[f"{p.as_posix()}:ffibuilder" for p in sorted(Path("c_ext").glob("build_*.py"))])
