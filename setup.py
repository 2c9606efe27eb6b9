"""The one compiled part: predis_server/_fastpath.c. It is optional: where no C compiler is
found the build skips it and predis_server/fastpath.py runs the same commands in Python."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("predis_server._fastpath", ["predis_server/_fastpath.c"],
                             extra_compile_args=["-O2"], optional=True)])
