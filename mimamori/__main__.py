"""The `mimamori` console script: Django's manage.py under the project's own name."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimamori.settings")
    from django.core.management import execute_from_command_line

    from mimamori.core import startup

    # A value the settings refuse ends every command with one line and status 4, not a traceback.
    startup.settings_or_exit()
    args = sys.argv[1:]
    # The documented commands are hyphenated (import-roster); Django's are module names.
    if args and not args[0].startswith("-"):
        args[0] = args[0].replace("-", "_")
    execute_from_command_line(["mimamori", *args])


if __name__ == "__main__":
    main()
