"""Stand-in for get-pip.py, used by ansible-test to put pip into its venvs.

ansible-test downloads get-pip.py from a host that is not reachable from every
machine and falls back to a cached copy under ~/.ansible/test/cache/; the
bootstrap places this file there. It installs the pip bundled with Python
(ensurepip), then upgrades to what ansible-test asked for with that pip, using
the machine's own pip configuration (index, CA bundle).
"""

import ensurepip
import os
import subprocess
import sys


def main() -> None:
    ensurepip.bootstrap(upgrade=True)
    # ensurepip points PIP_CONFIG_FILE at /dev/null, which would hide pip.conf.
    os.environ.pop("PIP_CONFIG_FILE", None)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args])


if __name__ == "__main__":
    main()
