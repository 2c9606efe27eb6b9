"""The compiled parts: predis_server/_fastpath.c (command runs) and _netpath.c (a connection's
reads and writes). They are optional: where no C compiler is found the build skips them and
predis_server/fastpath.py runs the same work in Python."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("predis_server._fastpath", ["predis_server/_fastpath.c"],
                             extra_compile_args=["-O2"], optional=True),
                   Extension("predis_server._netpath", ["predis_server/_netpath.c"],
                             extra_compile_args=["-O2"], optional=True)])
