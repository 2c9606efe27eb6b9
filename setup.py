"""The compiled parts: predis_server/_fastpath.c (command runs; its parts are the headers in
predis_server/fastpath_c/, one translation unit) and _netpath.c (a connection's reads and writes).
They are optional: where no C compiler is found the build skips them and predis_server/fastpath.py
runs the same work in Python."""
from glob import glob

from setuptools import Extension, setup

# depends: an edited header rebuilds the extension
setup(ext_modules=[Extension("predis_server._fastpath", ["predis_server/_fastpath.c"],
                             depends=sorted(glob("predis_server/fastpath_c/*.h")),
                             extra_compile_args=["-O2"], optional=True),
                   Extension("predis_server._netpath", ["predis_server/_netpath.c"],
                             extra_compile_args=["-O2"], optional=True)])
