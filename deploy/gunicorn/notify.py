"""gunicorn config of the notify API; settings and their variables are in common.py.

gunicorn -c deploy/gunicorn/notify.py 'services.notify.app:create_app()'
"""

import sys
from pathlib import Path

# gunicorn execs this file; make `deploy` importable whatever the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.gunicorn.common import configure

globals().update(configure("notify", default_port=8004))
