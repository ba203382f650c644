"""gunicorn config of the scoring API; settings and their variables are in common.py.

gunicorn -c deploy/gunicorn/scoring.py 'services.scoring.app:create_app()'
"""

import sys
from pathlib import Path

# gunicorn execs this file; make `deploy` importable whatever the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.gunicorn.common import configure

globals().update(configure("scoring", default_port=8003))
