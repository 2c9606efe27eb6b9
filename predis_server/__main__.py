"""``python -m predis_server`` is ``predis-server``."""
import sys

from .cli import main

sys.exit(main())
