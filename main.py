"""``python main.py [--host H] [--port P] [--workers N]`` starts the server, as ``stratochat serve`` does."""

import sys

from stratochat.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
