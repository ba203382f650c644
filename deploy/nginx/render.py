"""Render the gateway's nginx.conf from hoithi.conf.template for a local run.

    python deploy/nginx/render.py [OUTPUT | -]   (default: $NGINX_PREFIX/nginx.conf,
                                                   that is var/nginx/nginx.conf)

Fills exactly the placeholders below from the environment (or their defaults) and
leaves every other `$...` alone, as the official nginx image's envsubst step does in
docker-compose.yml. Creates the prefix with its temp directories, so that nginx can
run as an ordinary, possibly non-root, process. Standard library only.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).resolve().with_name("hoithi.conf.template")

# The upstreams follow the ports deploy/gunicorn/ binds, so setting QUIZ_PORT alone
# moves both ends.
DEFAULTS = {
    "GATEWAY_PORT": "8080",
    "REGISTRATION_UPSTREAM": f"127.0.0.1:{os.environ.get('REGISTRATION_PORT') or 8001}",
    "QUIZ_UPSTREAM": f"127.0.0.1:{os.environ.get('QUIZ_PORT') or 8002}",
    "SCORING_UPSTREAM": f"127.0.0.1:{os.environ.get('SCORING_PORT') or 8003}",
    "NOTIFY_UPSTREAM": f"127.0.0.1:{os.environ.get('NOTIFY_PORT') or 8004}",
    # The build output of web/build.py (content-hashed assets), not the sources.
    "WEB_ROOT": str(ROOT / "web" / "dist"),
    "NGINX_PREFIX": str(ROOT / "var" / "nginx"),
    # The secret the services check before believing the gateway's headers: GATEWAY_KEY,
    # else the file `python -m services.core.auth keygen var/keys` writes.
    "GATEWAY_KEY": "",
}
PATHS = ("WEB_ROOT", "NGINX_PREFIX")
TEMP_DIRS = ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp")
PLACEHOLDER = re.compile(r"\$\{(" + "|".join(DEFAULTS) + r")\}")
# A value goes into the config verbatim: refuse what could end a directive or open a block.
UNSAFE = re.compile(r"[\s;{}'\"#$\\]")


def values(environ: Mapping[str, str]) -> dict[str, str]:
    chosen = {name: environ.get(name) or default for name, default in DEFAULTS.items()}
    key_file = Path(environ.get("GATEWAY_KEY_FILE") or ROOT / "var" / "keys" / "gateway.key")
    if not chosen["GATEWAY_KEY"]:
        try:
            chosen["GATEWAY_KEY"] = key_file.read_text(encoding="ascii").strip()
        except OSError:
            pass
    if not chosen["GATEWAY_KEY"]:
        raise SystemExit(
            f"render.py: no GATEWAY_KEY and no {key_file}: run `python -m services.core.auth keygen var/keys`"
        )
    for name in PATHS:
        chosen[name] = str(Path(chosen[name]).resolve())
    for name, value in chosen.items():
        if UNSAFE.search(value):
            raise SystemExit(f"render.py: {name}={value!r} may not contain spaces or ;{{}}'\"#$\\")
    return chosen


def render(template: str, chosen: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: chosen[m.group(1)], template)


def main(argv: list[str]) -> int:
    chosen = values(os.environ)
    prefix = Path(chosen["NGINX_PREFIX"])
    output = Path(argv[1]) if len(argv) > 1 else prefix / "nginx.conf"
    for directory in ("logs", *TEMP_DIRS):
        (prefix / directory).mkdir(parents=True, exist_ok=True)
    text = render(TEMPLATE.read_text(encoding="utf-8"), chosen)
    if str(output) == "-":
        sys.stdout.write(text)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
